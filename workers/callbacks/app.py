"""The callback listener (`riskflow callbacks run`): the receive URLs of riskflow's app
channels, `/callbacks/<vendor>/<channel>`, and `/health`.

A click is checked (signature, decryption, replay window: `CallbackRejected` is answered 400
and counted `rejected`), answered at once, and acted on after the answer
(`workers.callbacks.clicks.CardActions`): the vendors' deadlines (WeCom 5 s) do not wait
for Temporal. Clicks still being acted on when the listener stops are given
`drain_seconds` to finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from riskflow.config.callbacks import CallbackSettings
from riskflow.infra.metrics import CARD_CLICKS
from workers.callbacks.clicks import CardActions, Click
from workers.callbacks.rejection import CallbackRejected
from workers.callbacks.wecom import WeComReceiver

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
RECEIVERS: web.AppKey[Mapping[str, WeComReceiver]] = web.AppKey("wecom")
ACTIONS: web.AppKey[CardActions] = web.AppKey("actions")
SETTINGS: web.AppKey[CallbackSettings] = web.AppKey("settings")
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
PENDING: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("pending")


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
    except CallbackRejected as exc:
        return _refused("wecom", receiver.name, exc)
    if click is not None:
        _start(request.app, click)
    return web.Response(text="")


def _start(app: web.Application, click: Click) -> None:
    task = asyncio.create_task(_act(app[ACTIONS], click))
    app[PENDING].add(task)
    task.add_done_callback(app[PENDING].discard)


async def _act(actions: CardActions, click: Click) -> None:
    try:
        outcome = await actions.handle(click)
    except Exception:
        CARD_CLICKS.labels(click.vendor, "failed").inc()
        logger.exception("click %s on %s failed", click.event_id, click.channel)
        return
    CARD_CLICKS.labels(click.vendor, outcome.result).inc()
    logger.info(
        "%s click %s: %s %s (%s)",
        click.channel,
        click.event_id,
        outcome.result,
        outcome.incident_id,
        outcome.detail,
    )


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "pending": len(request.app[PENDING])})


def build_app(
    receivers: Mapping[str, WeComReceiver],
    actions: CardActions,
    settings: CallbackSettings,
    clock: Callable[[], float] = time.time,
    drain_seconds: float = 10.0,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[RECEIVERS] = receivers
    app[ACTIONS] = actions
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[PENDING] = set()
    app.router.add_get("/callbacks/wecom/{channel}", wecom_check)
    app.router.add_post("/callbacks/wecom/{channel}", wecom_event)
    app.router.add_get("/health", health)

    async def drain(app: web.Application) -> None:
        tasks: set[asyncio.Task[None]] = app[PENDING]
        if tasks:
            await asyncio.wait(set(tasks), timeout=drain_seconds)

    app.on_shutdown.append(drain)
    return app
