"""The callback listener (`riskflow callbacks run`): the receive URLs of riskflow's app
channels, `/callbacks/<vendor>/<channel>`, and `/health`.

Each channel's receive URL takes at most `callbacks.max_requests_per_second` (429 beyond;
counted `rejected`), bodies up to 64 KiB (413). A click is checked (signature, decryption,
replay window: `CallbackRejected` is answered 400 and counted `rejected`; the same signed
request seen again within twice the window is `replayed`), then handed to Temporal as a
`CardClickWorkflow` (one per vendor event id: a retried delivery starts nothing and is
counted `duplicate`) and answered: the vendors' deadlines (WeCom 5 s) never wait for the
incident's update, and a click survives any process restart from then on. When Temporal
cannot take it, the answer is 503 and the vendor delivers it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from riskflow.config.callbacks import CallbackSettings
from riskflow.contracts.card_actions import CardClick
from riskflow.infra.metrics import CARD_CLICKS
from riskflow.infra.redis import FAIL_OPEN_SECONDS, RedisClient, store_outage
from riskflow.names import CARD_CLICK_QUEUE, callback_replay_key, card_click_workflow_id
from workers.callbacks.rejection import CallbackRejected
from workers.callbacks.wecom import WeComReceiver
from workflows.card_click import CardClickWorkflow

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY_BYTES = 64 * 1024
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


def _refused(vendor: str, channel: str, exc: CallbackRejected) -> web.Response:
    CARD_CLICKS.labels(vendor, "rejected").inc()
    logger.warning("%s callback for %s refused: %s", vendor, channel, exc)
    return web.Response(status=400, text=exc.reason)


async def wecom_check(request: web.Request) -> web.Response:
    receiver = _receiver(request)
    window = request.app[SETTINGS].replay_window_seconds
    try:
        plain = receiver.url_check(request.query, request.app[CLOCK](), window)
    except CallbackRejected as exc:
        return _refused("wecom", receiver.name, exc)
    return web.Response(body=plain, content_type="text/plain")


async def wecom_event(request: web.Request) -> web.Response:
    receiver = _receiver(request)
    body = await request.read()  # whole (client_max_size answers 413 above MAX_BODY_BYTES)
    window = request.app[SETTINGS].replay_window_seconds
    try:
        click = receiver.click(request.query, body, request.app[CLOCK](), window)
        replay_key = callback_replay_key(receiver.name, request.query.get("msg_signature", ""))
        await _first_sight(request.app, replay_key)
    except CallbackRejected as exc:
        return _refused("wecom", receiver.name, exc)
    if click is None:
        return web.Response(text="")
    answer = await _start(request.app, click)
    if answer.status != 200:  # not taken: the vendor's redelivery must pass
        await _forget(request.app, replay_key)
    return answer


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


@web.middleware
async def _paced(request: web.Request, handler: Handler) -> web.StreamResponse:
    """At most `max_requests_per_second` to each receive URL (in this process)."""
    channel = request.match_info.get("channel")
    if channel is not None and not request.app[PACE].admit(channel, request.app[CLOCK]()):
        parts = request.path.split("/")  # /callbacks/<vendor>/<channel>
        CARD_CLICKS.labels(parts[2] if len(parts) > 3 else "unknown", "rejected").inc()
        return web.Response(status=429, text="too many requests")
    return await handler(request)


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
    try:
        await app[CLIENT].start_workflow(
            CardClickWorkflow.run,
            click,
            id=card_click_workflow_id(click.channel, click.event_id),
            task_queue=app[QUEUE],
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        CARD_CLICKS.labels(click.vendor, "duplicate").inc()
        return web.Response(text="")
    except RPCError as exc:
        logger.error("click %s on %s not taken: %s", click.event_id, click.channel, exc)
        return web.Response(status=503, text="try again")
    return web.Response(text="")


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
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_paced])
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
    return app
