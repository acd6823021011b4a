"""DingTalk Stream mode: the connection a `dingtalk_app` channel with `callback_mode: stream`
keeps open to DingTalk, which pushes its card clicks over it (no public URL needed).

Protocol (open.dingtalk.com/document/direction/stream-mode-protocol-access-description):

- `POST {base}/v1.0/gateway/connections/open` `{"clientId": app key, "clientSecret",
  "subscriptions": [{"type": "CALLBACK", "topic": "/v1.0/card/instances/callback"}], "ua",
  "localIp"}` -> `{"endpoint", "ticket"}`; then a WebSocket to `endpoint?ticket=` (the ticket
  is single-use and short-lived: a new one for every connection).
- Frames are JSON: `{"specVersion", "type": "SYSTEM" | "EVENT" | "CALLBACK", "headers":
  {"messageId", "topic", "time", ...}, "data": "<JSON string>"}`. Each is answered with
  `{"code": 200, "headers": {"contentType", "messageId"}, "message": "OK", "data"}`: a
  `ping` with its own data; a card click with `{"response": {}}` once it is kept (`take`).
  A click not answered is pushed again later with the same `messageId` (the click's event
  id here: it acts once); a click refused by its checks (another corp, a card riskflow did
  not send for that incident) is answered too, so it does not come back.
- SYSTEM `disconnect`: DingTalk is about to close the connection: a new one is opened at
  once. No frame for `IDLE_SECONDS` (DingTalk pings every few seconds): the connection is
  taken for dead and replaced. A connection that cannot be opened is tried again after
  1, 2, 5, 10, then every 30 s.

Own code on aiohttp rather than the `dingtalk-stream` SDK: its `start()` cannot be cancelled,
it fetches tickets with blocking calls without a timeout inside the event loop, keeps no
dedupe, swallows card-reply errors and needs a pinned websockets (docs/design/
chat-app-actions.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from activities.notify.http import timeouts
from riskflow.contracts.card_actions import CardClick
from riskflow.infra.metrics import CARD_CLICKS
from workers.callbacks.dingtalk import DingTalkReceiver
from workers.callbacks.rejection import CallbackRejected

logger = logging.getLogger(__name__)
TOPIC = "/v1.0/card/instances/callback"
OPEN_PATH = "/v1.0/gateway/connections/open"
IDLE_SECONDS = 90.0
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
Take = Callable[[CardClick, str], Awaitable[bool]]


class StreamRefused(Exception):
    """DingTalk would not open a connection (wrong app key or secret, or an error)."""


class StreamConnection:
    """One channel's Stream connection, kept open by `run` until cancelled. `take(click,
    seen)` keeps a click (False: it could not be kept now; DingTalk pushes it again);
    `connected` is set while a connection is open (tests and /health read it)."""

    def __init__(
        self,
        receiver: DingTalkReceiver,
        session: aiohttp.ClientSession,
        base: str,
        app_secret: str,
        take: Take,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.receiver = receiver
        self.connected = asyncio.Event()
        self._session = session
        self._base = base.rstrip("/")
        self._secret = app_secret
        self._take = take
        self._idle = idle_seconds

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                endpoint, ticket = await self._open()
                async with self._session.ws_connect(
                    endpoint, params={"ticket": ticket}, timeout=aiohttp.ClientWSTimeout(ws_close=5)
                ) as ws:
                    failures = 0
                    self.connected.set()
                    logger.info("%s: DingTalk Stream connected", self.receiver.name)
                    await self._serve(ws)
            except (aiohttp.ClientError, TimeoutError, OSError, StreamRefused) as exc:
                failures += 1
                logger.warning("%s: DingTalk Stream: %s", self.receiver.name, exc)
            finally:
                self.connected.clear()
            await asyncio.sleep(
                RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1] if failures else 0
            )

    async def _open(self) -> tuple[str, str]:
        body = {
            "clientId": self.receiver.channel.app_key,
            "clientSecret": self._secret,
            "subscriptions": [{"type": "CALLBACK", "topic": TOPIC}],
            "ua": "riskflow",
            "localIp": "",
        }
        url = self._base + OPEN_PATH
        async with self._session.post(url, json=body, timeout=timeouts(10.0)) as response:
            text = await response.text(errors="replace")
        try:
            answer = json.loads(text)
        except json.JSONDecodeError:
            answer = None
        if response.status != 200 or not isinstance(answer, dict):
            raise StreamRefused(f"connections/open answered HTTP {response.status}: {text[:200]}")
        endpoint, ticket = answer.get("endpoint"), answer.get("ticket")
        if not isinstance(endpoint, str) or not isinstance(ticket, str):
            raise StreamRefused(f"connections/open answered no endpoint and ticket: {text[:200]}")
        return endpoint, ticket

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Answer frames until the connection ends, goes quiet, or DingTalk says it will
        close it."""
        while True:
            message = await ws.receive(timeout=self._idle)
            if message.type != aiohttp.WSMsgType.TEXT:
                if message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.PING):
                    continue
                return  # closed, closing or an error: a new connection
            frame = _frame(message.data)
            if frame is None:
                logger.warning("%s: DingTalk Stream sent a frame it cannot be", self.receiver.name)
                continue
            kind, headers = frame.get("type"), frame.get("headers") or {}
            topic, data = headers.get("topic"), frame.get("data")
            if kind == "SYSTEM" and topic == "disconnect":
                return
            if kind == "SYSTEM" and topic == "ping":
                await ws.send_str(_ack(headers, data if isinstance(data, str) else "{}"))
            elif kind == "CALLBACK" and topic == TOPIC:
                if await self._click(headers, data):
                    await ws.send_str(_ack(headers, json.dumps({"response": {}})))
            else:
                await ws.send_str(_ack(headers, "{}"))

    async def _click(self, headers: dict[str, Any], data: Any) -> bool:
        """Whether the frame is done with: kept, or refused for good."""
        message_id = str(headers.get("messageId") or "")
        at = _seconds(headers.get("time"))
        try:
            click = self.receiver.stream_click(
                data if isinstance(data, str) else "", message_id, at
            )
        except CallbackRejected as exc:
            CARD_CLICKS.labels("dingtalk", "rejected").inc()
            logger.warning("%s: DingTalk Stream click refused: %s", self.receiver.name, exc)
            return True
        if click is None:
            return True
        return await self._take(click, f"stream:{message_id}")


def _frame(text: str) -> dict[str, Any] | None:
    try:
        frame = json.loads(text)
    except json.JSONDecodeError:
        return None
    ok = isinstance(frame, dict) and isinstance(frame.get("headers", {}), dict)
    return frame if ok else None


def _ack(headers: dict[str, Any], data: str) -> str:
    reply_headers = {"contentType": "application/json", "messageId": headers.get("messageId")}
    return json.dumps({"code": 200, "headers": reply_headers, "message": "OK", "data": data})


def _seconds(millis: Any) -> float:
    try:
        return int(str(millis)) / 1000
    except ValueError:
        return time.time()
