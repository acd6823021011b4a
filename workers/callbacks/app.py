"""The callback listener (`riskflow callbacks run`): the receive URLs of riskflow's app
channels, `/callbacks/wecom/<channel>` (GET: the URL check; POST: events),
`/callbacks/feishu/<channel>` (POST: the URL check and callbacks) and
`/callbacks/dingtalk/<channel>` (POST: card callbacks), and `/health`.

- Bodies up to 64 KiB (413 beyond). A click is checked: signature, replay window,
  decryption, corp and app (`CallbackRejected`: 400 with the reason); the same signed
  request seen again within twice the window is a redelivery, answered as taken and acting
  nothing (`duplicate`), and its signature with another body is `replayed` (400). Every
  refusal is counted
  `rejected`; beyond `callbacks.max_requests_per_second` refusals a second on a channel they
  are answered 429 and not logged. Clicks that pass their checks are never paced: a flood
  of junk cannot hold one up.
- A click that passes becomes a `CardClickWorkflow` (one per vendor event id: a redelivered
  click starts nothing, counted `duplicate`) and is answered at once: the vendors'
  deadlines (DingTalk 2 s, Feishu 3 s, WeCom 5 s) never wait for the incident's update, and
  the click survives any restart from then on. Temporal not taking it within
  `START_DEADLINE_SECONDS`: the click is parked in Redis (the outbox) and answered 200; the
  listener starts parked clicks as soon as Temporal takes them. Redis away as well: 503
  (WeCom delivers it again; Feishu and DingTalk do not deliver card callbacks again: the
  presser sees an error and presses again).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from aiohttp import web
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from riskflow.config.callbacks import CallbackSettings
from riskflow.contracts.card_actions import CardClick
from riskflow.infra.metrics import CARD_CLICKS
from riskflow.infra.redis import RedisClient, as_text, store_outage
from riskflow.names import (
    CARD_CLICK_QUEUE,
    callback_replay_key,
    card_click_outbox_key,
    card_click_workflow_id,
)
from workers.callbacks.dingtalk import DingTalkReceiver
from workers.callbacks.dingtalk_stream import StreamConnection
from workers.callbacks.feishu import FeishuReceiver
from workers.callbacks.rejection import CallbackRejected
from workers.callbacks.wecom import WeComReceiver
from workflows.card_click import CardClickWorkflow

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
# DingTalk waits 2 s for the answer, Feishu 3 s, WeCom 5 s: a click is answered within
# 1.8 s whatever stalls (the replay check and the outbox each give Redis 0.4 s, Temporal
# gets 1 s; a start takes milliseconds, and one not taken in time is parked, not lost).
START_DEADLINE_SECONDS = 1.0
REDIS_SECONDS = 0.4
Started = Literal["started", "duplicate", "unavailable"]


@dataclass(frozen=True)
class Receivers:
    """The app channels' receivers by vendor, each by channel name."""

    wecom: Mapping[str, WeComReceiver] = field(default_factory=dict)
    feishu: Mapping[str, FeishuReceiver] = field(default_factory=dict)
    dingtalk: Mapping[str, DingTalkReceiver] = field(default_factory=dict)
    # DingTalk channels in Stream mode: their connections (`listener.streams`), once started
    streams: list[StreamConnection] = field(default_factory=list)

    def names(self) -> list[str]:
        return [*self.wecom, *self.feishu, *self.dingtalk]


RECEIVERS: web.AppKey[Receivers] = web.AppKey("receivers")
CLIENT: web.AppKey[Client] = web.AppKey("client")
SETTINGS: web.AppKey[CallbackSettings] = web.AppKey("settings")
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
QUEUE: web.AppKey[str] = web.AppKey("click_queue")
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
PACE: web.AppKey[Pace] = web.AppKey("pace")
# channel -> refusal reason -> count, since the listener started (`/health`)
REFUSED: web.AppKey[dict[str, dict[str, int]]] = web.AppKey("refused")
R = TypeVar("R")


def _receiver(request: web.Request, found: Mapping[str, R]) -> R:
    receiver = found.get(request.match_info["channel"])
    if receiver is None:
        raise web.HTTPNotFound(text="no such app channel")
    return receiver


def _refused(
    app: web.Application, vendor: str, channel: str, exc: CallbackRejected
) -> web.Response:
    """400 with the reason (Feishu: as JSON); beyond `max_requests_per_second` refusals of a
    channel, 429 and no log line (a flood of junk costs a signature check each, and never
    holds up a click that passes its checks: those are not paced)."""
    CARD_CLICKS.labels(vendor, "rejected").inc()
    refused = app[REFUSED].setdefault(channel, {})
    refused[exc.reason] = refused.get(exc.reason, 0) + 1
    if not app[PACE].admit(channel, app[CLOCK]()):
        return web.Response(status=429, text="too many refused requests")
    logger.warning("%s callback for %s refused: %s", vendor, channel, exc)
    if vendor == "feishu":
        return web.json_response({"code": 400, "msg": exc.reason}, status=400)
    if vendor == "dingtalk":
        return web.json_response({"code": exc.reason, "message": exc.reason}, status=400)
    return web.Response(status=400, text=exc.reason)


async def _body(request: web.Request, vendor: str) -> bytes:
    """The whole body; above `MAX_BODY_BYTES`, 413 (counted)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        CARD_CLICKS.labels(vendor, "rejected").inc()
        raise


async def wecom_check(request: web.Request) -> web.Response:
    receiver = _receiver(request, request.app[RECEIVERS].wecom)
    window = request.app[SETTINGS].replay_window_seconds
    try:
        plain = receiver.url_check(request.query, request.app[CLOCK](), window)
    except CallbackRejected as exc:
        return _refused(request.app, "wecom", receiver.name, exc)
    return web.Response(body=plain, content_type="text/plain")


async def wecom_event(request: web.Request) -> web.Response:
    receiver = _receiver(request, request.app[RECEIVERS].wecom)
    body = await _body(request, "wecom")
    window = request.app[SETTINGS].replay_window_seconds
    try:
        click = receiver.click(request.query, body, request.app[CLOCK](), window)
        replay_key = callback_replay_key(receiver.name, request.query.get("msg_signature", ""))
        first = await _first_sight(request.app, replay_key, body)
    except CallbackRejected as exc:
        return _refused(request.app, "wecom", receiver.name, exc)
    if click is not None and not first:
        CARD_CLICKS.labels("wecom", "duplicate").inc()
        return web.Response(text="")
    if click is None or await _accepted(request.app, click, replay_key):
        return web.Response(text="")
    return web.Response(status=503, text="try again")


async def feishu_event(request: web.Request) -> web.Response:
    receiver = _receiver(request, request.app[RECEIVERS].feishu)
    body = await _body(request, "feishu")
    window, now = request.app[SETTINGS].replay_window_seconds, request.app[CLOCK]()
    try:
        callback = receiver.open(request.headers, body, now, window)
        if callback.get("type") == "url_verification":
            return web.json_response({"challenge": str(callback.get("challenge", ""))})
        click = receiver.click(callback, now)
        signature = request.headers.get("X-Lark-Signature", "")
        replay_key = callback_replay_key(receiver.name, signature.lower())
        first = await _first_sight(request.app, replay_key, body)
    except CallbackRejected as exc:
        return _refused(request.app, "feishu", receiver.name, exc)
    if click is not None and not first:
        CARD_CLICKS.labels("feishu", "duplicate").inc()
        return web.json_response({})
    if click is None or await _accepted(request.app, click, replay_key):
        return web.json_response({})
    return web.json_response({"code": 503, "msg": "try again"}, status=503)


async def dingtalk_event(request: web.Request) -> web.Response:
    receiver = _receiver(request, request.app[RECEIVERS].dingtalk)
    body = await _body(request, "dingtalk")
    window, now = request.app[SETTINGS].replay_window_seconds, request.app[CLOCK]()
    try:
        click = receiver.click(request.headers, body, now, window)
        signature = request.headers.get("x-ddpaas-signature", "")
        replay_key = callback_replay_key(receiver.name, signature.strip())
        first = await _first_sight(request.app, replay_key, body)
    except CallbackRejected as exc:
        return _refused(request.app, "dingtalk", receiver.name, exc)
    if click is not None and not first:
        CARD_CLICKS.labels("dingtalk", "duplicate").inc()
        return web.json_response({})
    if click is None or await _accepted(request.app, click, replay_key):
        return web.json_response({})
    return web.json_response({"code": "unavailable", "message": "try again"}, status=503)


async def take(app: web.Application, click: CardClick, seen: str) -> bool:
    """Keep a click that reached the listener another way than a request (DingTalk Stream),
    once per `seen` (its message id): seen before and kept, True at once; False when it
    could not be kept now (the vendor pushes it again)."""
    replay_key = callback_replay_key(click.channel, seen)
    if not await _first_sight(app, replay_key):
        CARD_CLICKS.labels(click.vendor, "duplicate").inc()
        return True
    return await _accepted(app, click, replay_key)


async def _accepted(app: web.Application, click: CardClick, replay_key: str) -> bool:
    """Whether the click is kept: its workflow started (or already was), or parked in the
    outbox. False (Temporal and Redis both away): the vendor's redelivery must pass the
    replay check, so the request is forgotten."""
    kept = False
    try:
        started = await _start(app, click)
        kept = started != "unavailable" or await _park(app, click)
    finally:
        if not kept:
            await _forget(app, replay_key)
    return kept


async def _park(app: web.Application, click: CardClick) -> bool:
    """Keep a click Temporal did not take in the outbox; False when Redis is away too."""
    parked_id = card_click_workflow_id(click.channel, click.event_id)
    try:
        async with asyncio.timeout(REDIS_SECONDS):
            await app[REDIS].hset(_outbox(app), parked_id, click.model_dump_json())
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
        for parked_id, raw in parked.items():
            click = CardClick.model_validate_json(raw)
            if await _start(app, click) == "unavailable":
                break  # Temporal still away: the rest wait too
            await app[REDIS].hdel(_outbox(app), parked_id)


async def _first_sight(app: web.Application, key: str, body: bytes = b"") -> bool:
    """Whether a signed request is seen for the first time (while its timestamp could still
    pass the window): False when the very same request (`body` too) was seen before, a
    redelivery, answered as taken; `CallbackRejected("replayed")` when its signature comes
    back with another body (DingTalk signs only the time). Redis unreachable: let it pass
    (a click's workflow id still acts on it once)."""
    ttl = int(2 * app[SETTINGS].replay_window_seconds) + 1
    digest = hashlib.sha256(body).hexdigest()
    try:
        async with asyncio.timeout(REDIS_SECONDS):
            first = await app[REDIS].set(key, digest, nx=True, ex=ttl)
            seen = None if first else await app[REDIS].get(key)
    except Exception as exc:
        if not store_outage(exc):
            raise
        logger.warning("replay check skipped, Redis unreachable: %s", exc)
        return True
    if first:
        return True
    if seen is not None and as_text(seen) == digest:
        return False
    raise CallbackRejected("replayed", "this signature was seen before with another body")


async def _forget(app: web.Application, key: str) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(REDIS_SECONDS):
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


async def _start(app: web.Application, click: CardClick) -> Started:
    """Hand the click to Temporal within `START_DEADLINE_SECONDS` (the SDK retries an
    unreachable server for longer than the vendors wait)."""
    try:
        async with asyncio.timeout(START_DEADLINE_SECONDS):
            await _start_workflow(app, click)
    except WorkflowAlreadyStartedError:
        CARD_CLICKS.labels(click.vendor, "duplicate").inc()
        return "duplicate"
    except (RPCError, TimeoutError) as exc:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        logger.warning(
            "click %s on %s not taken by Temporal: %s", click.event_id, click.channel, why
        )
        return "unavailable"
    return "started"


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
    """Up: `{"ok": true, "streams": {channel: connected}, "refused": {channel: {reason:
    count}}}`: whether each DingTalk Stream connection is open (a closed one is being
    reopened: not a reason to restart the listener), and the callbacks refused since the
    listener started, by reason (`riskflow status` reads a secret that does not match)."""
    streams = {s.receiver.name: s.connected.is_set() for s in request.app[RECEIVERS].streams}
    return web.json_response({"ok": True, "streams": streams, "refused": request.app[REFUSED]})


def build_app(
    receivers: Receivers,
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
    app[REFUSED] = {}
    app[RECEIVERS] = receivers
    app[CLIENT] = client
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app.router.add_get("/callbacks/wecom/{channel}", wecom_check)
    app.router.add_post("/callbacks/wecom/{channel}", wecom_event)
    app.router.add_post("/callbacks/feishu/{channel}", feishu_event)
    app.router.add_post("/callbacks/dingtalk/{channel}", dingtalk_event)
    app.router.add_get("/health", health)

    async def outbox(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(drain_outbox(app))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(outbox)
    return app
