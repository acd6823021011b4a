"""The DingTalk app simulator's Stream-mode gateway (服务端 Stream 模式): the WebSocket a
`dingtalk_app` channel in stream mode holds open, and the frames DingTalk pushes over it, as
open.dingtalk.com/document/direction/stream-mode-protocol-access-description and its fuller
copy (open-dingtalk/developerpedia `docs/learn/stream/protocol.md`) describe them, checked
against the official SDK (open-dingtalk/dingtalk-stream-sdk-python `stream.py`,
`frames.py`, `handlers.py`, `card_callback.py`).

- `POST /dingtalk-app/{name}/v1.0/gateway/connections/open` `{"clientId", "clientSecret",
  "subscriptions": [{"type": "EVENT" | "CALLBACK", "topic"}], "ua"?, "localIp"?}` ->
  `{"endpoint", "ticket"}`. DingTalk answers `wss://wss-open-connection.dingtalk.com:443/
  connect` and a UUID; here the endpoint is `ws://<the request's Host>/dingtalk-app/{name}/
  stream/connect`. The ticket lasts 90 s and opens one connection ("ticket的有效期为90秒且只能
  用来建立一条连接"). Another key or secret: HTTP 401 `{"requestid", "code": "authFailed",
  "message": "鉴权失败"}` (as api.dingtalk.com answers it in the SDK's logs quoted in public
  issues); a body without both or without subscriptions: 400 `param.invalid` (the
  simulator's code).
- `GET {endpoint}?ticket=T` upgrades to a WebSocket; a ticket unknown, used, expired or
  another app's: HTTP 401 `{"code": "invalidTicket", "message"}` (the simulator's words).
- Frames DingTalk sends (JSON text): `{"specVersion": "1.0", "type": "SYSTEM" | "CALLBACK",
  "headers": {"appId", "connectionId", "contentType": "application/json", "messageId",
  "time" (epoch ms, a string), "topic"}, "data": "<a JSON string>"}`. SYSTEM `ping` carries
  `{"opaque"}` and wants `{"code": 200, "headers": {"contentType", "messageId"}, "message":
  "OK", "data": <the ping's data>}` (compared as JSON: the SDK re-serialises it); SYSTEM
  `disconnect` carries `{"reason"}`, wants nothing, and the connection closes after a grace
  (DingTalk: 10 s; `disconnect_grace` here).
- A push goes to one live connection subscribed to its topic (DingTalk picks one at random);
  its ack is the frame whose `headers.messageId` is the push's, awaited `ack_deadline`
  seconds. Unacked, the same frame (same messageId) is pushed again after `repush_seconds`,
  to another live connection where there is one, up to `repushes` times. (DingTalk documents
  re-pushes for EVENT pushes; for callbacks it calls the ack "diagnostic". The simulator
  re-pushes callbacks too, so the product's duplicate handling is exercised.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

CARD_TOPIC = "/v1.0/card/instances/callback"
TICKET_SECONDS = 90.0
TYPES = ("EVENT", "CALLBACK")
JSON_TYPE = "application/json"


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def app_id_of(app_key: str) -> str:
    """The `appId` header: DingTalk's is a UUID of the app; here one derived from its key."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dingtalk-app:{app_key}"))


class OpenRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message


Subscriptions = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Ticket:
    channel: str
    expires_at: float
    subscriptions: Subscriptions  # (type, topic)
    ua: str
    local_ip: str


def check_open(raw: bytes, app_key: str, secret: str) -> tuple[Subscriptions, str, str]:
    """The subscriptions, `ua` and `localIp` of a `connections/open` body, or
    `OpenRefused`."""
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise OpenRefused(400, "param.invalid", "the body is not a JSON object")
    key, given = data.get("clientId"), data.get("clientSecret")
    if not (isinstance(key, str) and isinstance(given, str)) or not key or not given:
        raise OpenRefused(400, "param.invalid", "clientId and clientSecret are required")
    if key != app_key or not secrets.compare_digest(given.encode(), secret.encode()):
        raise OpenRefused(401, "authFailed", "鉴权失败")
    subscriptions = data.get("subscriptions")
    if not isinstance(subscriptions, list) or not subscriptions:
        raise OpenRefused(400, "param.invalid", "subscriptions must be a non-empty array")
    found = []
    for item in subscriptions:
        kind = item.get("type") if isinstance(item, dict) else None
        topic = item.get("topic") if isinstance(item, dict) else None
        if kind not in TYPES or not isinstance(topic, str) or not topic:
            raise OpenRefused(400, "param.invalid", f"subscription {item!r}: type, topic")
        found.append((str(kind), topic))
    return tuple(found), str(data.get("ua") or ""), str(data.get("localIp") or "")


@dataclass
class Connection:
    id: str
    channel: str
    socket: web.WebSocketResponse
    opened_at: float
    ticket: Ticket
    pings_answered: int = 0
    closing: bool = False
    late_frames: int = 0  # acks after their deadline, and frames that answer nothing
    waiting: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    def subscribed(self, kind: str, topic: str) -> bool:
        return (kind, topic) in self.ticket.subscriptions or (
            kind == "EVENT" and ("EVENT", "*") in self.ticket.subscriptions
        )

    def receive(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        headers = frame.get("headers") if isinstance(frame, dict) else None
        message_id = headers.get("messageId") if isinstance(headers, dict) else None
        waiter = self.waiting.pop(message_id, None) if isinstance(message_id, str) else None
        if waiter is None or waiter.done() or not isinstance(frame, dict):
            self.late_frames += 1
            return
        waiter.set_result(frame)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "opened_at": self.opened_at,
            "subscriptions": [{"type": k, "topic": t} for k, t in self.ticket.subscriptions],
            "ua": self.ticket.ua,
            "local_ip": self.ticket.local_ip,
            "pings_answered": self.pings_answered,
            "closing": self.closing,
            "late_frames": self.late_frames,
        }


@dataclass(frozen=True)
class Sent:
    """One frame sent on a connection and what came back within the deadline."""

    connection: str
    ack: dict[str, Any] | None
    seconds: float
    error: str | None = None


class Gateway:
    """Tickets and live connections of every app, by channel name."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        ack_deadline: float,
        repush_seconds: float = 1.0,
        repushes: int = 2,
        disconnect_grace: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.ack_deadline = ack_deadline
        self.repush_seconds = repush_seconds
        self.repushes = repushes
        self.disconnect_grace = disconnect_grace
        self.rng = rng or random.Random()
        self.tickets: dict[str, Ticket] = {}
        self.connections: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._counter = 0

    def clear(self) -> None:
        """Forget every ticket; close every connection (`POST /admin/reset`)."""
        self.tickets.clear()
        for connection in list(self.connections.values()):
            connection.closing = True
            self._later(0.0, connection)
        self.connections.clear()

    async def close_all(self) -> None:
        for connection in list(self.connections.values()):
            await connection.socket.close()
        self.connections.clear()

    def issue(self, channel: str, raw: bytes, key: str, secret: str) -> str:
        """A ticket for `channel`'s app, or `OpenRefused`."""
        subscriptions, ua, ip = check_open(raw, key, secret)
        ticket = str(uuid.uuid4())  # the docs' "7724109a-ea43-4aa2-b803-87d82c5aaee6"
        self.tickets[ticket] = Ticket(channel, self.clock() + TICKET_SECONDS, subscriptions, ua, ip)
        return ticket

    def take(self, channel: str, value: str) -> Ticket | None:
        """The ticket, spent now; None if unknown, used, expired or another app's."""
        ticket = self.tickets.get(value)
        if ticket is None or ticket.channel != channel:
            return None
        del self.tickets[value]
        return ticket if self.clock() < ticket.expires_at else None

    async def serve(self, request: web.Request, ticket: Ticket) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        connection = Connection(
            f"conn-{secrets.token_hex(6)}", ticket.channel, socket, self.clock(), ticket
        )
        self.connections[connection.id] = connection
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    connection.receive(message.data)
        finally:
            self.connections.pop(connection.id, None)
            for waiter in connection.waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionResetError("the connection closed"))
        return socket

    def live(self, channel: str, kind: str | None = None, topic: str = "") -> list[Connection]:
        found = [c for c in self.connections.values() if c.channel == channel and not c.closing]
        return [c for c in found if kind is None or c.subscribed(kind, topic)]

    def message_id(self) -> str:
        """Like the docs' `213d841d_972_1898bb26334_70a7`."""
        self._counter += 1
        ms = int(self.clock() * 1000)
        return f"{secrets.token_hex(4)}_{self._counter}_{ms:x}_{secrets.token_hex(2)}"

    def frame(
        self, kind: str, topic: str, data: str, message_id: str, app_key: str, connection: str
    ) -> dict[str, Any]:
        headers = {"appId": app_id_of(app_key), "connectionId": connection}
        headers |= {"contentType": JSON_TYPE, "messageId": message_id}
        headers |= {"time": str(int(self.clock() * 1000)), "topic": topic}
        return {"specVersion": "1.0", "type": kind, "headers": headers, "data": data}

    async def send(self, connection: Connection, frame: dict[str, Any]) -> Sent:
        """Send `frame` -> its ack, or None after the deadline."""
        message_id = frame["headers"]["messageId"]
        waiter = connection.waiting[message_id] = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        try:
            await connection.socket.send_str(compact(frame))
            ack = await asyncio.wait_for(waiter, self.ack_deadline)
            return Sent(connection.id, ack, time.monotonic() - started)
        except TimeoutError:
            return Sent(connection.id, None, time.monotonic() - started)
        except (ConnectionError, RuntimeError) as exc:  # closed before or while waiting
            return Sent(connection.id, None, time.monotonic() - started, str(exc) or "closed")
        finally:
            connection.waiting.pop(message_id, None)

    def pick(
        self, channel: str, kind: str, topic: str, avoid: str | None = None, only: str | None = None
    ) -> Connection:
        """A live connection of `channel` subscribed to the topic (the one named `only`), at
        random, another than `avoid` where there is one; `LookupError` if none."""
        found = [c for c in self.live(channel, kind, topic) if only in (None, c.id)]
        if not found:
            raise LookupError(f"no live stream connection of {channel!r} subscribed to {topic}")
        return self.rng.choice([c for c in found if c.id != avoid] or found)

    async def push(
        self, frame_for: Callable[[Connection], dict[str, Any]], first: Connection, repushes: int
    ) -> list[tuple[Sent, bool]]:
        """Push to `first`; unacked, push the same message again after `repush_seconds` (to
        another connection if any), up to `repushes` times -> each (sent, was a re-push)."""
        frame = frame_for(first)
        kind, topic = frame["type"], frame["headers"]["topic"]
        sent, target = [(await self.send(first, frame), False)], first
        for _ in range(repushes):
            if sent[-1][0].ack is not None:
                break
            await asyncio.sleep(self.repush_seconds)
            try:
                target = self.pick(first.channel, kind, topic, avoid=target.id)
            except LookupError:
                break
            sent.append((await self.send(target, frame_for(target)), True))
        return sent

    async def ping(self, channel: str, app_key: str) -> list[dict[str, Any]]:
        """SYSTEM ping to each live connection of `channel` -> whether each answered it
        right: code 200, the same messageId, the same data (as JSON)."""
        found = []
        for connection in self.live(channel):
            data = compact({"opaque": str(uuid.uuid4())})
            frame = self.frame("SYSTEM", "ping", data, self.message_id(), app_key, connection.id)
            sent = await self.send(connection, frame)
            correct = sent.ack is not None and _answers(sent.ack, frame)
            connection.pings_answered += int(correct)
            found.append(
                {"connection": connection.id, "answered": sent.ack is not None}
                | {"correct": correct, "ack": sent.ack, "error": sent.error}
            )
        return found

    def disconnect(self, channel: str, app_key: str) -> list[Connection]:
        """SYSTEM disconnect to each connection of `channel` (no more pushes go to it); each
        closes after the grace."""
        found = self.live(channel)
        data = compact({"reason": "connection is expired"})
        for connection in found:
            connection.closing = True
            frame = self.frame(
                "SYSTEM", "disconnect", data, self.message_id(), app_key, connection.id
            )
            self._later(self.disconnect_grace, connection, frame)
        return found

    def _later(
        self, delay: float, connection: Connection, frame: dict[str, Any] | None = None
    ) -> None:
        async def run() -> None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                if frame is not None:
                    await connection.socket.send_str(compact(frame))
                await asyncio.sleep(delay)
                await connection.socket.close()

        try:
            task = asyncio.get_running_loop().create_task(run())
        except RuntimeError:  # no loop: nothing is connected either
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _answers(ack: dict[str, Any], frame: dict[str, Any]) -> bool:
    headers = ack.get("headers")
    same_id = (
        isinstance(headers, dict) and headers.get("messageId") == frame["headers"]["messageId"]
    )
    try:
        same_data = isinstance(ack.get("data"), str) and json.loads(ack["data"]) == json.loads(
            frame["data"]
        )
    except ValueError:
        same_data = False
    return ack.get("code") == 200 and same_id and same_data
