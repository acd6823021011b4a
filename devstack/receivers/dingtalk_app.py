"""A local simulator of the DingTalk open platform's interactive cards for an internal app's
robot (互动卡片, HTTP callback mode) for `dingtalk_app` channels, at `/dingtalk-app/{name}`
(`riskflow.config.channels.LOCAL_PATHS`; `{name}` the channel's name, or the last path
segment of its configured URL), following open.dingtalk.com/document/development/...:

- `POST .../v1.0/oauth2/accessToken` `{"appKey", "appSecret"}` (obtain-the-access-token-of-
  an-internal-app) -> `{"accessToken", "expireIn": 7200}`, the same token renewed while it
  lasts. Another key or secret: HTTP 400 `{"code": "invalidClientIdOrSecret", "message":
  "无效的clientId或者clientSecret", "requestid"}`.
- Every other call needs the header `x-acs-dingtalk-access-token`: without it HTTP 400
  `AuthenticationFailed.MissingParameter` ("缺少参数：x-acs-dingtalk-access-token"); unknown,
  another app's, expired or revoked: HTTP 400 `InvalidAuthentication` ("不合法的access_token";
  server-api-error-codes-1, and a public probe log of api.dingtalk.com for both shapes).
- `POST .../v1.0/card/callbacks/register` `{"callbackRouteKey", "callbackUrl", "apiSecret"?,
  "forceUpdate"?}` (register-card-callback-address) -> `{"success": true, "result":
  {"callbackUrl", "apiSecret"}}`. A key the app registered already, without `forceUpdate`,
  is left as it was and its registration answered (event-callback-card: "存在则结果返回上次
  注册信息"; the API page's table also lists 500 `param.callbackRouteKeyExist`).
- `POST .../v1.0/card/instances/createAndDeliver` (create-and-deliver-cards), checked
  strictly (`dingtalk_app_requests`; the template: `dingtalk_app_card`) -> `{"success": true,
  "result": {"outTrackId", "deliverResults": [{"spaceType", "spaceId", "success",
  "carrierId" | "errorMsg"}]}}`. A group not in the channel's `open_conversation_ids` or a
  user not in its `to_users` fails its deliverResult (the message is the simulator's); the
  card exists anyway, so its `outTrackId` is spent: again -> 400 `param.cardAlreadyExist`.
- `PUT .../v1.0/card/instances` (interactive-card-update-interface) -> `{"success": true,
  "result": true}`; merge or overwrite as `dingtalk_app_state` says; an unknown outTrackId:
  400 `param.cardNotExist`.
- `records.fault_for(name)` scripts the answer of createAndDeliver and PUT (after their
  checks), as for the robots (`devstack.receivers.server`); with `delay_seconds` the call
  takes effect and is answered late. A channel's `records.limits` answer HTTP 403
  `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi` (how-to-process-api-throttling-on-the-
  dingtalk-server; its message from server-api-error-codes-1).

- Stream mode (`dingtalk_stream`): `POST .../v1.0/gateway/connections/open` (no token) ->
  `{"endpoint", "ticket"}`, and the WebSocket at `/dingtalk-app/{name}/stream/connect`; the
  clicks on a card created with `callbackType` "STREAM" are pushed over it.

Errors are `{"code", "requestid", "message"}` (param.* codes carry the code as the message,
as the tables write them). Admin, in `dingtalk_app_admin`. `POST /admin/reset` forgets
everything here too, and closes the stream connections. Not simulated: the IM_SINGLE and
ONE_BOX spaces, dynamic data sources, EVENT pushes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from devstack.receivers import dingtalk_app_admin as admin
from devstack.receivers.dingtalk_app_card import warnings
from devstack.receivers.dingtalk_app_requests import (
    Create,
    Refused,
    Space,
    Update,
    check_create,
    check_register,
    check_update,
)
from devstack.receivers.dingtalk_app_state import TOKEN_SECONDS, Card, Delivered, Route, State
from devstack.receivers.dingtalk_stream import CARD_TOPIC, Gateway, OpenRefused
from devstack.receivers.records import Records
from riskflow.config.channels import ChannelSecrets, DingTalkAppChannel, NotificationSettings

VENDOR = "dingtalk_app"
TOKEN_HEADER = "x-acs-dingtalk-access-token"
TOO_FAST = Refused(
    "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
    "您的企业应用调用钉钉开放平台当前接口的所有请求都被暂时禁用了",
    403,
)


@dataclass(frozen=True)
class App:
    """A `dingtalk_app` channel as DingTalk knows the app and its robot."""

    name: str
    app_key: str
    secret: str
    corp_id: str
    template_id: str
    groups: frozenset[str]
    users: frozenset[str]
    callback_mode: str = "http"  # how the channel takes clicks: "http" or "stream"


def apps_of(config: NotificationSettings, secrets: ChannelSecrets) -> dict[str, App]:
    """The apps by the path segment after /dingtalk-app/."""
    found: dict[str, App] = {}
    for name, channel in config.channels.items():
        if not isinstance(channel, DingTalkAppChannel):
            continue
        url = secrets.url(name)
        segment = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] if url else name
        found[segment] = App(
            name,
            channel.app_key,
            secrets.secret(name) or "",
            channel.corp_id,
            channel.card_template_id,
            frozenset(channel.open_conversation_ids),
            frozenset(channel.to_users),
            str(getattr(channel, "callback_mode", "http")),
        )
    return found


def refusal(refused: Refused) -> web.Response:
    body = {"code": refused.code, "requestid": str(uuid.uuid4()).upper()}
    return web.json_response(body | {"message": refused.message}, status=refused.status)


class DingTalkAppSimulator:
    """The simulator's apps and state; `callback_deadline` (DingTalk: 2 s) bounds how long a
    click waits for the product, over HTTP or for a stream push's ack. Stream mode: an
    unacked push is pushed again after `repush_seconds`, up to `repushes` times; a
    connection told to disconnect closes `disconnect_grace` seconds later (DingTalk: 10 s)."""

    def __init__(
        self,
        config: NotificationSettings,
        secrets: ChannelSecrets,
        records: Records,
        *,
        callback_deadline: float = 2.0,
        repush_seconds: float = 1.0,
        repushes: int = 2,
        disconnect_grace: float = 10.0,
    ) -> None:
        self.apps = apps_of(config, secrets)
        self.by_name = {app.name: app for app in self.apps.values()}
        self.records = records
        self.state = State()
        self.callback_deadline = callback_deadline
        self.stream = Gateway(
            records.clock,
            ack_deadline=callback_deadline,
            repush_seconds=repush_seconds,
            repushes=repushes,
            disconnect_grace=disconnect_grace,
        )

    def clear(self) -> None:
        self.state.clear()
        self.stream.clear()

    def refuse(self, app: App, refused: Refused) -> web.Response:
        self.records.refuse(app.name, VENDOR, f"{refused.status} {refused.code} {refused.message}")
        return refusal(refused)

    def access_token(self, app: App, raw: bytes) -> web.Response:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = None
        key, secret = (
            (data.get("appKey"), data.get("appSecret")) if isinstance(data, dict) else ("", "")
        )
        if not (
            key == app.app_key
            and isinstance(secret, str)
            and hmac.compare_digest(secret.encode(), app.secret.encode())
        ):
            message = "无效的clientId或者clientSecret"
            return self.refuse(app, Refused("invalidClientIdOrSecret", message))
        token = self.state.token_for(app.name, self.records.clock())
        return web.json_response({"accessToken": token, "expireIn": TOKEN_SECONDS})

    def authorize(self, app: App, value: str | None) -> web.Response | None:
        """None if the call's token is this app's and alive, else DingTalk's refusal."""
        if not value:
            missing = f"缺少参数：{TOKEN_HEADER}"
            return self.refuse(app, Refused("AuthenticationFailed.MissingParameter", missing))
        token = self.state.tokens.get(value)
        dead = token is None or token.revoked or token.expires_at <= self.records.clock()
        if dead or token is None or token.channel != app.name:
            return self.refuse(app, Refused("InvalidAuthentication", "不合法的access_token"))
        return None

    async def register(self, app: App, raw: bytes) -> web.Response:
        asked = check_register(raw)
        key, now = (app.name, asked.route_key), self.records.clock()
        route = self.state.routes.get(key)
        if route is None or asked.force:
            route = Route(app.name, asked.route_key, asked.url, asked.api_secret, now)
            self.state.routes[key] = route
        result = {"callbackUrl": route.url, "apiSecret": route.api_secret or ""}
        return web.json_response({"success": True, "result": result})

    async def create(self, app: App, raw: bytes) -> web.Response:
        asked = check_create(raw, app.app_key)
        if asked.template_id != app.template_id:
            raise Refused("param.templateNotExist", f"no template {asked.template_id!r}")
        if (app.name, asked.out_track_id) in self.state.cards:
            raise Refused("param.cardAlreadyExist")
        return await self._effect(app, lambda: self._create(app, asked))

    def _create(self, app: App, asked: Create) -> web.Response:
        delivered = [self._deliver(app, space) for space in asked.spaces]
        card = Card(
            app.name,
            asked.out_track_id,
            asked.template_id,
            asked.callback_type,
            asked.route_key,
            delivered,
            asked.recipients,
            dict(asked.public),
            {u: dict(d) for u, d in asked.private.items()},
        )
        card.warnings = [*asked.warnings, *self._warnings(app, asked)]
        self.state.cards[(app.name, card.out_track_id)] = card
        title = card.public.get("title", "")
        extra = {"out_track_id": card.out_track_id, "warnings": card.warnings}
        self.records.accept(app.name, VENDOR, asked.body, title=title, **extra)
        results = [d.answer() for d in delivered]
        answer = {"outTrackId": card.out_track_id, "deliverResults": results}
        return web.json_response({"success": True, "result": answer})

    @staticmethod
    def _deliver(app: App, space: Space) -> Delivered:
        """The card reaches a group of the channel's or a user of its robot chats; elsewhere
        its deliverResult fails (the robot is in no such group, no such user)."""
        carrier = secrets.token_urlsafe(18)
        if space.space_type == "IM_GROUP" and space.space_id not in app.groups:
            return Delivered(space, carrier, "robot is not a member of the conversation")
        if space.space_type == "IM_ROBOT" and space.space_id not in app.users:
            return Delivered(space, carrier, "user not found")
        return Delivered(space, carrier)

    def _warnings(self, app: App, asked: Create) -> list[str]:
        found = warnings(asked.public, whole=True, where="cardData.cardParamMap")
        for user, data in asked.private.items():
            found += warnings(data, whole=False, where=f"privateData.{user}.cardParamMap")
        route = (app.name, asked.route_key or "")
        if asked.callback_type == "HTTP" and route not in self.state.routes:
            found.append(f"callbackRouteKey {asked.route_key!r} is not registered (yet)")
        live = self.stream.live(app.name, "CALLBACK", CARD_TOPIC)
        if asked.callback_type == "STREAM" and not live:
            found.append(f"callbackType STREAM: no stream connection subscribed to {CARD_TOPIC}")
        mode = {"HTTP": "http", "STREAM": "stream"}.get(asked.callback_type or "")
        if mode is not None and mode != app.callback_mode:
            found.append(
                f"callbackType {asked.callback_type}: the channel's callback_mode is "
                f"{app.callback_mode!r}"
            )
        return found

    async def update(self, app: App, raw: bytes) -> web.Response:
        asked = check_update(raw)
        card = self.state.cards.get((app.name, asked.out_track_id))
        if card is None:
            raise Refused("param.cardNotExist")
        return await self._effect(app, lambda: self._update(card, asked, raw))

    def _update(self, card: Card, asked: Update, raw: bytes) -> web.Response:
        card.apply(asked)
        found = warnings(card.public, whole=True, where="cardData.cardParamMap")
        for user in asked.private or {}:
            found += warnings(card.private[user], whole=False, where=f"privateData.{user}")
        entry = {"at": self.records.clock(), "source": "PUT /v1.0/card/instances"}
        card.updates.append(entry | {"body": json.loads(raw), "warnings": found})
        return web.json_response({"success": True, "result": True})

    async def _effect(self, app: App, effect: Callable[[], web.Response]) -> web.Response:
        """The call's effect, unless a scripted fault or the app's rate limit answers
        instead; a fault with a delay lets it take effect and answers late."""
        fault = self.records.fault_for(app.name)
        if fault is not None and not fault.delay_seconds:
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        if fault is None and self.records.over_limit(app.name):
            return self.refuse(app, TOO_FAST)
        answer = effect()
        if fault is not None:
            await asyncio.sleep(fault.delay_seconds)
        return answer


SIMULATOR: web.AppKey[DingTalkAppSimulator] = web.AppKey("dingtalk_app_simulator")
Handler = Callable[[DingTalkAppSimulator, App, bytes], Awaitable[web.Response]]


def _app_of(request: web.Request) -> App | web.Response:
    simulator = request.app[SIMULATOR]
    name = request.match_info["name"]
    app = simulator.apps.get(name)
    if app is None:
        simulator.records.refuse(name, VENDOR, "no dingtalk_app channel of that name")
        return web.json_response({"error": f"no dingtalk_app channel {name!r}"}, status=404)
    return app


async def _access_token(request: web.Request) -> web.Response:
    app = _app_of(request)
    if isinstance(app, web.Response):
        return app
    return request.app[SIMULATOR].access_token(app, await request.read())


async def _open_connection(request: web.Request) -> web.Response:
    simulator, app = request.app[SIMULATOR], _app_of(request)
    if isinstance(app, web.Response):
        return app
    try:
        ticket = simulator.stream.issue(app.name, await request.read(), app.app_key, app.secret)
    except OpenRefused as exc:
        return simulator.refuse(app, Refused(exc.code, exc.message, exc.status))
    scheme = "wss" if request.secure else "ws"
    endpoint = f"{scheme}://{request.host}/dingtalk-app/{request.match_info['name']}/stream/connect"
    return web.json_response({"endpoint": endpoint, "ticket": ticket})


async def _stream_connect(request: web.Request) -> web.StreamResponse:
    simulator, app = request.app[SIMULATOR], _app_of(request)
    if isinstance(app, web.Response):
        return app
    ticket = simulator.stream.take(app.name, request.query.get("ticket", ""))
    if ticket is None:
        message = "the ticket is unknown, used, expired or another app's"
        return simulator.refuse(app, Refused("invalidTicket", message, 401))
    return await simulator.stream.serve(request, ticket)


def _call(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        simulator, app = request.app[SIMULATOR], _app_of(request)
        if isinstance(app, web.Response):
            return app
        denied = simulator.authorize(app, request.headers.get(TOKEN_HEADER))
        if denied is not None:
            return denied
        try:
            return await handler(simulator, app, await request.read())
        except Refused as exc:
            return simulator.refuse(app, exc)

    return handle


def add_routes(
    app: web.Application, config: NotificationSettings, secrets: ChannelSecrets, records: Records
) -> None:
    """The simulator's routes on the receiver's `app`, its state at `app[SIMULATOR]` (a test
    may put one of its own there before the app starts), cleared by `records.reset()`."""
    app[SIMULATOR] = DingTalkAppSimulator(config, secrets, records)
    records.on_reset.append(lambda: app[SIMULATOR].clear())
    base = "/dingtalk-app/{name}/v1.0"
    app.router.add_post(f"{base}/oauth2/accessToken", _access_token)
    app.router.add_post(f"{base}/card/callbacks/register", _call(DingTalkAppSimulator.register))
    create = _call(DingTalkAppSimulator.create)
    app.router.add_post(f"{base}/card/instances/createAndDeliver", create)
    app.router.add_put(f"{base}/card/instances", _call(DingTalkAppSimulator.update))
    app.router.add_post(f"{base}/gateway/connections/open", _open_connection)
    app.router.add_get("/dingtalk-app/{name}/stream/connect", _stream_connect)
    app.on_shutdown.append(lambda app: app[SIMULATOR].stream.close_all())
    admin.add_routes(app, SIMULATOR)
