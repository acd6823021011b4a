"""A local simulator of the Feishu / Lark open platform for a custom app (企业自建应用) of a
`feishu_app` channel, at `/feishu-app/{name}` (`riskflow.config.channels.LOCAL_PATHS`; `{name}`
the channel's name, or the last path segment of its configured URL). Sources: open.feishu.cn
docs, mirrored in riba2534/feishu-open-docs@3ab55dfc (paths below):

- `POST .../open-apis/auth/v3/tenant_access_token/internal` `{"app_id", "app_secret"}`
  (`authentication-management/access-token/tenant_access_token_internal.md`) ->
  `{"code": 0, "msg": "ok", "tenant_access_token": "t-…", "expire"}`: the same token while
  ≥ 30 min are left, then a new one (the old one still works). Errors (HTTP 400; the generic
  error list `api-call-guide/ugjM14COyUjL4ITN.md`): 10003 "invalid param" (app_id missing or
  another app's, app_secret missing), 10014 "app secret invalid" (what users get for a wrong
  secret; the list names 10015 "wrong app secret" too). The body is read whatever its
  Content-Type (lark-oapi sends none).
- `POST .../open-apis/im/v1/messages?receive_id_type=` (`im-v1/message/create.md`) with
  `Authorization: Bearer t-…`: an interactive card (`feishu_app_requests`, `feishu_app_card`)
  -> `{"code": 0, "msg": "success", "data": {"message_id": "om_…", "chat_id", "msg_type",
  "create_time" (ms, a string), …}}`. 99991661 no token, 99991663 unknown, revoked or expired
  (HTTP 400; 200 has been seen too, docs/design/chat-app-actions.md). A receive_id the
  channel's `receive_ids` do not name, of nobody seen pressing one of its cards (members of
  its chats, within the app's availability): 230002 for a chat ("The bot can not be outside
  the group"), 230013 for a person ("Bot has NO availability to this user"). A `uuid` seen within
  the hour: nothing is sent and the first message's `data` is answered again (Feishu says
  only "至多成功发送一条消息"; what it answers is not documented). A channel's
  `records.limits`: 230020 ("This operation triggers the frequency limit").
- `PATCH .../open-apis/im/v1/messages/{message_id}` `{"content"}` (`im-v1/message-card/
  patch.md`) -> `{"code": 0, "msg": "ok", "data": {}}`, the card replaced for everyone. Only
  the sending app (else 230027, the nearest documented code: the page says "调用该接口的身份
  需与发送卡片的身份一致" and gives none), within 14 days (230031), old and new card both with
  `config.update_multi: true` said (230001: no code documented), 5 a second per message
  (230020); an unknown message_id: 230001. The new card is checked as a sent one.
- `records.fault_for(name)` scripts the answer of send and PATCH (after their checks), as for
  the robots (`devstack.receivers.server`); with `delay_seconds` the call takes effect and is
  answered late.

Admin (what Feishu's users do), in `feishu_app_admin`: `GET /admin/feishu-app/cards
[?channel=]`, `POST /admin/feishu-app/expire-tokens[?channel=]`, `POST /admin/feishu-app/click`,
`POST /admin/feishu-app/verify-url`. `POST /admin/reset` forgets everything here too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from devstack.receivers import feishu_app_admin as admin
from devstack.receivers.feishu_app_card import Invalid
from devstack.receivers.feishu_app_requests import (
    Send,
    check_patch,
    check_send,
    error_answer,
    invalid_param,
    parse,
)
from devstack.receivers.feishu_app_state import (
    CARD_SECONDS,
    PATCHES_PER_SECOND,
    Message,
    State,
    tenant_key,
)
from devstack.receivers.records import Records
from riskflow.config.channels import ChannelSecrets, FeishuAppChannel, NotificationSettings

VENDOR = "feishu_app"


@dataclass(frozen=True)
class App:
    """A `feishu_app` channel as Feishu knows the app."""

    name: str
    app_id: str
    secret: str
    receive_ids: tuple[str, ...]  # the chats the bot is in, the people it may reach
    callback: tuple[str, str] | None  # Verification Token, Encrypt Key

    @property
    def tenant_key(self) -> str:
        return tenant_key(self.app_id)


def apps_of(config: NotificationSettings, secrets: ChannelSecrets) -> dict[str, App]:
    """The apps by the path segment after /feishu-app/."""
    found: dict[str, App] = {}
    for name, channel in config.channels.items():
        if not isinstance(channel, FeishuAppChannel):
            continue
        url = secrets.url(name)
        segment = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] if url else name
        pair = secrets.callback(name)
        callback = (pair[0], pair[1]) if pair is not None and len(pair) == 2 else None
        secret = secrets.secret(name) or ""
        found[segment] = App(name, channel.app_id, secret, tuple(channel.receive_ids), callback)
    return found


class FeishuAppSimulator:
    """The simulator's apps and state; `callback_deadline` (Feishu: 3 s) and
    `url_check_deadline` (1 s) bound how long a click or URL check waits for the product."""

    def __init__(
        self,
        config: NotificationSettings,
        secrets: ChannelSecrets,
        records: Records,
        *,
        callback_deadline: float = 3.0,
        url_check_deadline: float = 1.0,
    ) -> None:
        self.apps = apps_of(config, secrets)
        self.by_name = {app.name: app for app in self.apps.values()}
        self.records = records
        self.state = State()
        self.callback_deadline = callback_deadline
        self.url_check_deadline = url_check_deadline

    def clear(self) -> None:
        self.state.clear()

    def refuse(self, channel: str, exc: Invalid) -> web.Response:
        self.records.refuse(channel, VENDOR, f"{exc.code} {exc.message}")
        return error_answer(exc)

    def token(self, app: App, raw: bytes) -> web.Response:
        try:
            body = parse(raw)
            app_id, secret = body.get("app_id"), body.get("app_secret")
            if not isinstance(app_id, str) or not isinstance(secret, str) or not secret:
                raise Invalid(10003, "invalid param")
            if app_id != app.app_id:
                raise Invalid(10003, "invalid param: app_id is not this app's")
            if not hmac.compare_digest(secret.encode(), app.secret.encode()):
                raise Invalid(10014, "app secret invalid")
        except Invalid as exc:
            self.records.refuse(app.name, VENDOR, f"{exc.code} {exc.message}")
            return web.json_response({"code": exc.code, "msg": exc.message}, status=exc.status)
        token, seconds = self.state.token_for(app.name, self.records.clock())
        answer = {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": seconds}
        return web.json_response(answer)

    def authorize(self, app: App, header: str) -> web.Response | None:
        """None if the Bearer token is this app's and alive, else Feishu's refusal."""
        scheme, _, value = header.partition(" ")
        if scheme != "Bearer" or not value.strip():
            message = (
                "Missing access token for authorization. Please make a request with token attached."
            )
            return self.refuse(app.name, Invalid(99991661, message))
        token = self.state.tokens.get(value.strip())
        alive = token is not None and not token.revoked and token.expires_at > self.records.clock()
        if token is None or token.channel != app.name or not alive:
            message = (
                "Invalid access token for authorization. Please make a request with token attached."
            )
            return self.refuse(app.name, Invalid(99991663, message))
        return None

    async def send(self, app: App, raw: bytes, query: dict[str, str]) -> web.Response:
        try:
            send = check_send(raw, query.get("receive_id_type"))
            self._reachable(app, send, self.state.members.get(app.name, set()))
        except Invalid as exc:
            return self.refuse(app.name, exc)
        fault = self.records.fault_for(app.name)
        if fault is not None and not fault.delay_seconds:
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        answer = self._send(app, send)
        if fault is not None:
            await asyncio.sleep(fault.delay_seconds)
        return answer

    @staticmethod
    def _reachable(app: App, send: Send, members: set[str]) -> None:
        """The channel's chats and people, and anyone seen pressing one of its cards."""
        if send.receive_id in app.receive_ids or send.receive_id in members:
            return
        if send.receive_id_type == "chat_id":
            raise Invalid(230002, "The bot can not be outside the group.")
        raise Invalid(230013, "Bot has NO availability to this user.")

    def _send(self, app: App, send: Send) -> web.Response:
        now, state = self.records.clock(), self.state
        first = state.repeated(app.name, send.uuid, now)
        if first is not None:  # the same uuid within the hour: nothing goes out
            self.records.duplicates += 1
            return web.json_response({"code": 0, "msg": "success", "data": first.answer})
        if self.records.over_limit(app.name):
            return self.refuse(
                app.name, Invalid(230020, "This operation triggers the frequency limit.")
            )
        message_id, chat_id = state.new_message_id(), self._chat_of(app, send)
        data = _data(app, send, message_id, chat_id, now)
        message = Message(
            app.name,
            message_id,
            send.receive_id_type,
            send.receive_id,
            chat_id,
            send.uuid,
            now,
            send.checked,
            data,
        )
        state.add(message)
        self.records.accept(
            app.name,
            VENDOR,
            send.body,
            title=send.checked.title,
            message_id=message_id,
            uuid=send.uuid,
            card=send.checked.card,
            warnings=send.checked.warnings,
        )
        return web.json_response({"code": 0, "msg": "success", "data": data})

    @staticmethod
    def _chat_of(app: App, send: Send) -> str:
        """A chat's own id; a person's p2p chat with the bot, stable per app and person."""
        if send.receive_id_type == "chat_id":
            return send.receive_id
        digest = hashlib.sha256(f"{app.app_id}:{send.receive_id}".encode()).hexdigest()
        return "oc_" + digest[:32]

    async def patch(self, app: App, raw: bytes, message_id: str) -> web.Response:
        try:
            message = self._patchable(app, message_id)
            checked = check_patch(raw)
            if not checked.update_multi:
                raise invalid_param("the new card's config.update_multi must be true")
            self._pace(message)
        except Invalid as exc:
            return self.refuse(app.name, exc)
        fault = self.records.fault_for(app.name)
        if fault is not None and not fault.delay_seconds:
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        message.apply(checked, self.records.clock(), "patch")
        if fault is not None:
            await asyncio.sleep(fault.delay_seconds)
        return web.json_response({"code": 0, "msg": "ok", "data": {}})

    def _patchable(self, app: App, message_id: str) -> Message:
        message = self.state.messages.get(message_id)
        if message is None:
            raise invalid_param(f"message_id {message_id!r} not found")
        if message.channel != app.name:
            raise Invalid(230027, "Lack of necessary permissions, ext=another app sent the message")
        if self.records.clock() - message.sent_at >= CARD_SECONDS:
            raise Invalid(230031, "Message can only be modified within 14 days after sending.")
        if not message.checked.update_multi:
            raise invalid_param("the sent card's config.update_multi was not true")
        return message

    def _pace(self, message: Message) -> None:
        now = self.records.clock()
        message.patched_at = [t for t in message.patched_at if now - t < 1.0] + [now]
        if len(message.patched_at) > PATCHES_PER_SECOND:
            message.patched_at.pop()
            raise Invalid(230020, "This operation triggers the frequency limit.")


def _data(app: App, send: Send, message_id: str, chat_id: str, now: float) -> dict[str, Any]:
    """The send answer's `data`, as the create page's example has it."""
    millis = str(int(now * 1000))  # "create_time": "1615380573411"
    sender = {"id": app.app_id, "id_type": "app_id", "sender_type": "app"}
    return {
        "message_id": message_id,
        "msg_type": "interactive",
        "create_time": millis,
        "update_time": millis,
        "deleted": False,
        "updated": False,
        "chat_id": chat_id,
        "sender": sender | {"tenant_key": app.tenant_key},
        "body": {"content": send.body["content"]},
    }


SIMULATOR: web.AppKey[FeishuAppSimulator] = web.AppKey("feishu_app_simulator")


def _app_of(request: web.Request) -> App | web.Response:
    simulator = request.app[SIMULATOR]
    name = request.match_info["name"]
    app = simulator.apps.get(name)
    if app is None:
        simulator.records.refuse(name, VENDOR, "no feishu_app channel of that name")
        return web.json_response({"error": f"no feishu_app channel {name!r}"}, status=404)
    return app


async def _token(request: web.Request) -> web.Response:
    app = _app_of(request)
    if isinstance(app, web.Response):
        return app
    return request.app[SIMULATOR].token(app, await request.read())


async def _send(request: web.Request) -> web.Response:
    simulator, app = request.app[SIMULATOR], _app_of(request)
    if isinstance(app, web.Response):
        return app
    denied = simulator.authorize(app, request.headers.get("Authorization", ""))
    if denied is not None:
        return denied
    return await simulator.send(app, await request.read(), dict(request.query))


async def _patch(request: web.Request) -> web.Response:
    simulator, app = request.app[SIMULATOR], _app_of(request)
    if isinstance(app, web.Response):
        return app
    denied = simulator.authorize(app, request.headers.get("Authorization", ""))
    if denied is not None:
        return denied
    message_id = request.match_info["message_id"]
    return await simulator.patch(app, await request.read(), message_id)


def add_routes(
    app: web.Application, config: NotificationSettings, secrets: ChannelSecrets, records: Records
) -> None:
    """The simulator's routes on the receiver's `app`, its state at `app[SIMULATOR]` (a test
    may put one of its own there before the app starts), cleared by `records.reset()`."""
    app[SIMULATOR] = FeishuAppSimulator(config, secrets, records)
    records.on_reset.append(lambda: app[SIMULATOR].clear())
    base = "/feishu-app/{name}/open-apis"
    app.router.add_post(f"{base}/auth/v3/tenant_access_token/internal", _token)
    app.router.add_post(f"{base}/im/v1/messages", _send)
    app.router.add_patch(f"{base}/im/v1/messages/{{message_id}}", _patch)
    admin.add_routes(app, SIMULATOR)
