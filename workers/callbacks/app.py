"""The callback listener (`riskflow callbacks run`): the receive URLs of riskflow's app
channels, `/callbacks/<vendor>/<channel>`, and `/health`.

- Bodies up to 64 KiB (413 beyond). A click is checked: signature, replay window,
  decryption, corp and app (`CallbackRejected`: 400 with the reason); the same signed
  request seen again within twice the window is `replayed` (400). Every refusal is counted
  `rejected`; beyond `callbacks.max_requests_per_second` refusals a second on a channel they
  are answered 429 and not logged. Clicks that pass their checks are never paced: a flood
  of junk cannot hold one up.
- A click that passes becomes a `CardClickWorkflow` (one per vendor event id: a redelivered
  click starts nothing, counted `duplicate`) and is answered at once: the vendors' deadlines
  (WeCom 5 s) never wait for the incident's update, and the click survives any restart from
  then on. Temporal not taking it within `START_DEADLINE_SECONDS`: the click is parked in
  Redis (the outbox) and answered 200; the listener starts parked clicks as soon as Temporal
  takes them. Redis away as well: 503, and the vendor delivers it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from riskflow.config.callbacks import CallbackSettings
from riskflow.contracts.card_actions import CardClick
from riskflow.infra.metrics import CARD_CLICKS
from riskflow.infra.redis import FAIL_OPEN_SECONDS, RedisClient, store_outage
from riskflow.names import (
    CARD_CLICK_QUEUE,
    callback_replay_key,
    card_click_outbox_key,
    card_click_workflow_id,
)
from workers.callbacks.rejection import CallbackRejected
from workers.callbacks.wecom import WeComReceiver
from workflows.card_click import CardClickWorkflow

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
START_DEADLINE_SECONDS = 3.0  # WeCom waits 5 s for the answer
RECEIVERS: web.AppKey[Mapping[str, WeComReceiver]] = web.AppKey("wecom")
CLIENT: web.AppKey[Client] = web.AppKey("client")
SETTINGS: web.AppKey[CallbackSettings] = web.AppKey("settings")
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
QUEUE: web.AppKey[str] = web.AppKey("click_queue")
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
PACE: web.AppKey[Pace] = web.AppKey("pace")


def _receiver(request: web.Request) -> WeComReceiver:
    receiver = request.app[RECEIVERS].get(request.match_info["channel"])
    if receiver is None:
        raise web.HTTPNotFound(text="no such app channel")
    return receiver


def _refused(
    app: web.Application, vendor: str, channel: str, exc: CallbackRejected
) -> web.Response:
    """400 with the reason; beyond `max_requests_per_second` refusals of a channel, 429 and
    no log line (a flood of junk costs a signature check each, and never holds up a click
    that passes its checks: those are not paced)."""
    CARD_CLICKS.labels(vendor, "rejected").inc()
    if not app[PACE].admit(channel, app[CLOCK]()):
        return web.Response(status=429, text="too many refused requests")
    logger.warning("%s callback for %s refused: %s", vendor, channel, exc)
    return web.Response(status=400, text=exc.reason)


async def wecom_check(request: web.Request) -> web.Response:
    receiver = _receiver(request)
    window = request.app[SETTINGS].replay_window_seconds
    try:
        plain = receiver.url_check(request.query, request.app[CLOCK](), window)
    except CallbackRejected as exc:
        return _refused(request.app, "wecom", receiver.name, exc)
    return web.Response(body=plain, content_type="text/plain")


async def wecom_event(request: web.Request) -> web.Response:
    receiver = _receiver(request)
    try:
        body = await request.read()  # whole; above client_max_size: 413
    except web.HTTPRequestEntityTooLarge:
        CARD_CLICKS.labels("wecom", "rejected").inc()
        raise
    window = request.app[SETTINGS].replay_window_seconds
    try:
        click = receiver.click(request.query, body, request.app[CLOCK](), window)
        replay_key = callback_replay_key(receiver.name, request.query.get("msg_signature", ""))
        await _first_sight(request.app, replay_key)
    except CallbackRejected as exc:
        return _refused(request.app, "wecom", receiver.name, exc)
    if click is None:
        return web.Response(text="")
    answer = None
    try:
        answer = await _start(request.app, click)
        if answer.status == 503 and await _park(request.app, click):
            answer = web.Response(text="")
    finally:
        if answer is None or answer.status != 200:  # not taken: a redelivery must pass
            await _forget(request.app, replay_key)
    return answer


async def _park(app: web.Application, click: CardClick) -> bool:
    """Keep a click Temporal did not take in the outbox; False when Redis is away too."""
    field = card_click_workflow_id(click.channel, click.event_id)
    try:
        async with asyncio.timeout(FAIL_OPEN_SECONDS):
            await app[REDIS].hset(_outbox(app), field, click.model_dump_json())
    except Exception as exc:
        if not store_outage(exc):
            raise
        return False
    logger.warning("click %s parked until Temporal takes it", click.event_id)
    return True


def _outbox(app: web.Application) -> str:
    return card_click_outbox_key(app[QUEUE])


async def drain_outbox(app: web.Application, every_seconds: float = 2.0) -> None:
    """Start the parked clicks, oldest first, whenever Temporal takes them (runs for the
    listener's life)."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            parked = await app[REDIS].hgetall(_outbox(app))
        except Exception as exc:
            if not store_outage(exc):
                raise
            continue
        for field, raw in parked.items():
            click = CardClick.model_validate_json(raw)
            answer = await _start(app, click)
            if answer.status != 200:
                break  # Temporal still away: the rest wait too
            await app[REDIS].hdel(_outbox(app), field)


async def _first_sight(app: web.Application, key: str) -> None:
    """`CallbackRejected("replayed")` for a signed request seen before (while its timestamp
    could still pass the window). Redis unreachable: let it pass (a click's workflow id
    still acts on it once)."""
    ttl = int(2 * app[SETTINGS].replay_window_seconds) + 1
    try:
        async with asyncio.timeout(FAIL_OPEN_SECONDS):
            first = await app[REDIS].set(key, "1", nx=True, ex=ttl)
    except Exception as exc:
        if not store_outage(exc):
            raise
        logger.warning("replay check skipped, Redis unreachable: %s", exc)
        return
    if not first:
        raise CallbackRejected("replayed", "this signed request was seen before")


async def _forget(app: web.Application, key: str) -> None:
    with contextlib.suppress(Exception):
        await app[REDIS].delete(key)


class Pace:
    """A sliding one-second window per channel."""

    def __init__(self, per_second: int) -> None:
        self._per_second = per_second
        self._seen: dict[str, deque[float]] = {}

    def admit(self, channel: str, now: float) -> bool:
        seen = self._seen.setdefault(channel, deque())
        while seen and seen[0] <= now - 1.0:
            seen.popleft()
        if len(seen) >= self._per_second:
            return False
        seen.append(now)
        return True


async def _start(app: web.Application, click: CardClick) -> web.Response:
    """Hand the click to Temporal within `START_DEADLINE_SECONDS` (the SDK retries an
    unreachable server for longer than the vendor waits): else 503, delivered again."""
    try:
        async with asyncio.timeout(START_DEADLINE_SECONDS):
            await _start_workflow(app, click)
    except WorkflowAlreadyStartedError:
        CARD_CLICKS.labels(click.vendor, "duplicate").inc()
        return web.Response(text="")
    except (RPCError, TimeoutError) as exc:
        logger.error("click %s on %s not taken: %s", click.event_id, click.channel, exc)
        return web.Response(status=503, text="try again")
    return web.Response(text="")


async def _start_workflow(app: web.Application, click: CardClick) -> None:
    await app[CLIENT].start_workflow(
        CardClickWorkflow.run,
        click,
        id=card_click_workflow_id(click.channel, click.event_id),
        task_queue=app[QUEUE],
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def build_app(
    receivers: Mapping[str, WeComReceiver],
    client: Client,
    redis: RedisClient,
    settings: CallbackSettings,
    clock: Callable[[], float] = time.time,
    click_queue: str = CARD_CLICK_QUEUE,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[QUEUE] = click_queue
    app[REDIS] = redis
    app[PACE] = Pace(settings.max_requests_per_second)
    app[RECEIVERS] = receivers
    app[CLIENT] = client
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app.router.add_get("/callbacks/wecom/{channel}", wecom_check)
    app.router.add_post("/callbacks/wecom/{channel}", wecom_event)
    app.router.add_get("/health", health)

    async def outbox(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(drain_outbox(app))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(outbox)
    return app
