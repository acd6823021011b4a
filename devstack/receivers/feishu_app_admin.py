"""The Feishu app simulator's admin endpoints: what Feishu's users do, and what Feishu holds,
for tests and the demo (`devstack.receivers.feishu_app`).

- `GET /admin/feishu-app/cards[?channel=NAME]`: the card messages sent, oldest first, each
  `{"channel", "message_id", "receive_id_type", "receive_id", "chat_id", "uuid", "sent_at",
  "card"` (as everyone sees it now), `"pressable"` (element_ids of enabled callback elements),
  `"warnings", "updates": [{"at", "source": "patch"|"callback", "card"}], "clicks", "toasts"}`.
- `POST /admin/feishu-app/expire-tokens[?channel=NAME]`: every token issued so far answers
  99991663; the next token request issues a new one -> `{"ok": true, "expired": N}`.
- `POST /admin/feishu-app/click` `{"channel", "message_id", "element_id", "user": {"open_id",
  "user_id"?, "union_id"?}, "option"` (a select_static's picked value; none for a button),
  `"callback_url", "deliveries": 1..5` (Feishu sends one; more repeat it, same event_id),
  `"tamper": null | "signature" | "stale_timestamp" | "token" | "app_id"}`: a user presses an
  element; the `card.action.trigger` is POSTed (`feishu_app_callback`) -> `{"event_id",
  "token", "create_time", "deliveries": [{"status", "body", "seconds", "timed_out",
  "error_code", "error", "toast", "card_applied"}]}`; an acceptable answer's toast is kept and
  its card replaces the message's card. 404 no such message of the channel; 409 no enabled
  callback element of that id on the card now, or the card is over 14 days old.
- `POST /admin/feishu-app/verify-url` `{"channel", "callback_url"}`: the URL check Feishu
  makes when an admin saves the callback URL -> `{"ok", "status", "body", "seconds",
  "timed_out"}`.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devstack.receivers.feishu_app_callback import (
    TAMPERS,
    Judged,
    Press,
    Sent,
    check_url,
    deliver,
)
from devstack.receivers.feishu_app_card import Target
from devstack.receivers.feishu_app_state import CARD_SECONDS, Message

if TYPE_CHECKING:
    from devstack.receivers.feishu_app import App, FeishuAppSimulator

MOST_DELIVERIES = 5


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise AdminError(400, f"{key} must be a non-empty string")
    return value


def _app(simulator: FeishuAppSimulator, data: dict[str, Any]) -> App:
    app = simulator.by_name.get(_string(data, "channel"))
    if app is None:
        raise AdminError(404, f"no feishu_app channel {data['channel']!r}")
    return app


def _url(data: dict[str, Any]) -> str:
    url = _string(data, "callback_url")
    if not url.startswith(("http://", "https://")):
        raise AdminError(400, "callback_url must be an http(s) URL")
    return url


def _callback(app: App) -> tuple[str, str]:
    if app.callback is None:
        raise AdminError(400, f"channel {app.name!r} has no Verification Token and Encrypt Key")
    return app.callback


def _target(
    simulator: FeishuAppSimulator, app: App, data: dict[str, Any]
) -> tuple[Message, Target]:
    message = simulator.state.messages.get(_string(data, "message_id"))
    if message is None or message.channel != app.name:
        raise AdminError(404, f"no message {data['message_id']!r} of channel {app.name!r}")
    if simulator.records.clock() - message.sent_at >= CARD_SECONDS:
        raise AdminError(409, "the card is over 14 days old: no longer interactive")
    element_id = _string(data, "element_id")
    target = message.checked.targets.get(element_id)
    if target is None or target.disabled:
        pressable = sorted(k for k, t in message.checked.targets.items() if not t.disabled)
        raise AdminError(409, f"no element {element_id!r} to press (pressable: {pressable})")
    return message, target


def _operator(app: App, data: dict[str, Any]) -> dict[str, str]:
    user = data.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("open_id"), str):
        raise AdminError(400, "user: {open_id, user_id?, union_id?}")
    union = (
        user.get("union_id") or "on_" + hashlib.sha256(user["open_id"].encode()).hexdigest()[:32]
    )
    operator = {"tenant_key": app.tenant_key}
    if isinstance(user.get("user_id"), str):  # only with the "获取用户 user ID" permission
        operator["user_id"] = user["user_id"]
    return operator | {"open_id": user["open_id"], "union_id": str(union)}


def _option(data: dict[str, Any], target: Target) -> str | None:
    option = data.get("option")
    if target.tag != "select_static":
        if option is not None:
            raise AdminError(400, f"{target.element_id!r} is a {target.tag}: no option")
        return None
    if option not in target.options:
        raise AdminError(400, f"option: one of {list(target.options)}")
    return str(option)


def _options(data: dict[str, Any]) -> tuple[int, Any]:
    deliveries, tamper = data.get("deliveries", 1), data.get("tamper")
    if isinstance(deliveries, bool) or not isinstance(deliveries, int):
        raise AdminError(400, "deliveries must be an integer")
    if not 1 <= deliveries <= MOST_DELIVERIES:
        raise AdminError(400, f"deliveries: 1..{MOST_DELIVERIES} (Feishu itself sends one)")
    if tamper is not None and tamper not in TAMPERS:
        raise AdminError(400, f"tamper: null or one of {list(TAMPERS)}")
    return deliveries, tamper


async def click(simulator: FeishuAppSimulator, data: dict[str, Any]) -> web.Response:
    app = _app(simulator, data)
    message, target = _target(simulator, app, data)
    callback, url = _callback(app), _url(data)
    operator, option = _operator(app, data), _option(data, target)
    deliveries, tamper = _options(data)
    now = simulator.records.clock()
    press = Press(
        app_id=app.app_id,
        tenant_key=app.tenant_key,
        operator=operator,
        message_id=message.message_id,
        chat_id=message.chat_id,
        tag=target.tag,
        value=target.value,
        option=option,
        event_id=secrets.token_hex(16),
        card_token="c-" + secrets.token_hex(20),
        create_time=str(int(now * 1_000_000)),  # µs, as the callback page's example
    )
    seen = simulator.state.members.setdefault(app.name, set())
    seen.update(v for k, v in operator.items() if k != "tenant_key" and v)
    message.clicks.append(
        {
            "at": now,
            "event_id": press.event_id,
            "operator": operator,
            "element_id": target.element_id,
        }
        | {"tag": target.tag, "value": target.value, "option": option}
        | {"deliveries": deliveries, "tamper": tamper}
    )
    clock, deadline = simulator.records.clock, simulator.callback_deadline
    found = await deliver(press, callback, url, clock, deliveries, tamper, deadline)
    answers = [_applied(message, press, sent, judged, clock()) for sent, judged in found]
    body = {"event_id": press.event_id, "token": press.card_token, "create_time": press.create_time}
    return web.json_response(body | {"deliveries": answers})


def _applied(
    message: Message, press: Press, sent: Sent, judged: Judged, now: float
) -> dict[str, Any]:
    """One delivery as the admin answer shows it; an acceptable answer's toast and card kept."""
    accepted = judged.error_code is None
    if accepted and judged.toast is not None:
        message.toasts.append({"at": now, "event_id": press.event_id, "toast": judged.toast})
    if accepted and judged.card is not None:
        message.apply(judged.card, now, "callback")
    return {"status": sent.status, "body": sent.body, "seconds": sent.seconds} | {
        "timed_out": sent.timed_out,
        "error_code": judged.error_code,
        "error": judged.error,
        "toast": judged.toast,
        "card_applied": accepted and judged.card is not None,
    }


async def verify_url(simulator: FeishuAppSimulator, data: dict[str, Any]) -> web.Response:
    app = _app(simulator, data)
    callback, url = _callback(app), _url(data)
    now, deadline = simulator.records.clock(), simulator.url_check_deadline
    return web.json_response(await check_url(callback, url, now, deadline))


def add_routes(app: web.Application, key: web.AppKey[FeishuAppSimulator]) -> None:
    async def cards(request: web.Request) -> web.Response:
        channel = request.query.get("channel")
        found = request.app[key].state.messages.values()
        return web.json_response([m.as_json() for m in found if channel in (None, m.channel)])

    async def expire(request: web.Request) -> web.Response:
        expired = request.app[key].state.expire_tokens(request.query.get("channel"))
        return web.json_response({"ok": True, "expired": expired})

    def posted(action: Any) -> Any:
        async def handle(request: web.Request) -> web.Response:
            try:
                data = await request.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                return web.json_response({"error": "the body is a JSON object"}, status=400)
            try:
                answer: web.Response = await action(request.app[key], data)
            except AdminError as exc:
                return web.json_response({"error": exc.message}, status=exc.status)
            return answer

        return handle

    app.router.add_get("/admin/feishu-app/cards", cards)
    app.router.add_post("/admin/feishu-app/expire-tokens", expire)
    app.router.add_post("/admin/feishu-app/click", posted(click))
    app.router.add_post("/admin/feishu-app/verify-url", posted(verify_url))
