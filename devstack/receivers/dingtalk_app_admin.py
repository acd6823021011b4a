"""The DingTalk app simulator's admin endpoints: what DingTalk's users do, and what DingTalk
holds, for tests and the demo (`devstack.receivers.dingtalk_app`).

- `GET /admin/dingtalk-app/cards[?channel=NAME]`: the card instances, each `{"channel",
  "out_track_id", "template", "callback_type", "callback_route_key", "spaces"` (the
  `deliverResults`), `"recipients"`, `"public"` (what everybody sees), `"private"` (userId ->
  that user's own data over it), `"updates"`, `"clicks"`, `"warnings"` (the template's)}.
- `GET /admin/dingtalk-app/routes[?channel=NAME]`: the registered callback routes.
- `POST /admin/dingtalk-app/expire-tokens[?channel=NAME]`: every token issued so far answers
  `InvalidAuthentication`; the next accessToken call issues a new one.
- `POST /admin/dingtalk-app/click` `{"channel", "out_track_id", "userid", "action_id",
  "params": {str: str} (extra; `eta` picks on_my_way's option, default the first),
  "deliveries": 1..5 (identical requests), "tamper": null | "signature" | "stale_timestamp" |
  "corp" | "track", "extras": false}`: the user presses a button; DingTalk's request goes to
  the card's registered route (`dingtalk_app_callback`) -> `{"out_track_id", "userid",
  "action_id", "params", "deliveries": [{"status", "body", "seconds", "timed_out",
  "applied", "error"}]}`. Each 2xx answer with `cardData` / `userPrivateData` is applied.
  404: no such card; 409: the card has no callbackType, its route is not registered, or
  that user cannot press that button now (`dingtalk_app_card.actions`).
- The same call on a card created with `callbackType` "STREAM" pushes one CALLBACK message
  (topic `/v1.0/card/instances/callback`, `data` the HTTP body with the Stream SDK sample's
  extras) to a live connection of the app subscribed to that topic (`"connection": id`
  picks one; else at random) -> `{"out_track_id", "userid", "action_id", "params",
  "message_id", "deliveries": [{"acked", "ack" (the ack frame or null), "seconds",
  "connection", "repush", "applied", "error"}]}`. `deliveries: N` pushes the same messageId N
  times; each push unacked within the deadline is pushed again after the simulator's
  `repush_seconds`, up to `"repushes"` (0..10, default the simulator's) times, to another
  live connection where there is one; the call answers when all of that is done. Each ack
  with code 200 whose `data` is `{"response": {cardData | userPrivateData, ...}}` is
  applied. `tamper`: `corp` or `track` (stream clicks are not signed). 409: no live
  connection subscribed (or not the named one).
- `GET /admin/dingtalk-app/connections[?channel=NAME]`: the live stream connections, each
  `{"id", "channel", "opened_at", "subscriptions": [{"type", "topic"}], "ua", "local_ip",
  "pings_answered", "closing", "late_frames"}`.
- `POST /admin/dingtalk-app/stream/disconnect` `{"channel"}`: SYSTEM `disconnect` to every
  connection of the app (none gets pushes after it); each is closed `disconnect_grace`
  seconds later -> `{"disconnected": [ids], "grace_seconds"}`.
- `POST /admin/dingtalk-app/stream/ping` `{"channel"}`: SYSTEM `ping` to every live
  connection -> `{"pings": [{"connection", "answered", "correct", "ack", "error"}]}`
  (correct: code 200, the ping's messageId, its data back).
- `POST /admin/reset` also forgets the tickets and closes every stream connection.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devstack.receivers.dingtalk_app_callback import (
    TAMPERS,
    Click,
    Delivery,
    answer_json,
    post,
    signed_headers,
)
from devstack.receivers.dingtalk_app_card import BadClick, actions, click_params
from devstack.receivers.dingtalk_app_requests import Refused, answer_of
from devstack.receivers.dingtalk_app_state import Card, Route
from devstack.receivers.dingtalk_stream import CARD_TOPIC, Connection, Sent

if TYPE_CHECKING:
    from devstack.receivers.dingtalk_app import App, DingTalkAppSimulator

MOST_DELIVERIES = 5
Report = dict[str, Any]


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


def _app(simulator: DingTalkAppSimulator, data: dict[str, Any]) -> App:
    app = simulator.by_name.get(_string(data, "channel"))
    if app is None:
        raise AdminError(404, f"no dingtalk_app channel {data['channel']!r}")
    return app


def _card(simulator: DingTalkAppSimulator, data: dict[str, Any]) -> tuple[App, Card]:
    app, track = _app(simulator, data), _string(data, "out_track_id")
    card = simulator.state.cards.get((app.name, track))
    if card is None:
        raise AdminError(404, f"no card {track!r} of channel {app.name!r}")
    if card.callback_type not in ("HTTP", "STREAM"):
        raise AdminError(409, f"card {track!r} has no callbackType: its clicks go nowhere")
    return app, card


def _route(simulator: DingTalkAppSimulator, card: Card) -> Route:
    route = simulator.state.routes.get((card.channel, card.route_key or ""))
    if route is None:
        raise AdminError(409, f"callbackRouteKey {card.route_key!r} is not registered")
    return route


def _press(card: Card, data: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """The user, the button and the click's params, or `AdminError`."""
    userid, action = _string(data, "userid"), _string(data, "action_id")
    if not card.reaches(userid):
        raise AdminError(409, f"the card did not reach {userid!r}")
    seen = card.view_of(userid)
    if action not in actions(seen):
        shown = list(actions(seen))
        raise AdminError(409, f"{userid!r} cannot press {action!r} now (can: {shown})")
    extra = data.get("params") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise AdminError(400, "params must be an object of strings")
    try:
        return userid, action, click_params(seen, action, extra)
    except BadClick as exc:
        raise AdminError(400, str(exc)) from exc


def _options(data: dict[str, Any], route: Route | None) -> tuple[int, Any, bool]:
    """deliveries, tamper, extras; `route` None: a stream card's click (never signed)."""
    deliveries, tamper, extras = data.get("deliveries", 1), data.get("tamper"), data.get("extras")
    if isinstance(deliveries, bool) or not isinstance(deliveries, int):
        raise AdminError(400, "deliveries must be an integer")
    if not 1 <= deliveries <= MOST_DELIVERIES:
        raise AdminError(400, f"deliveries: 1..{MOST_DELIVERIES}")
    if tamper is not None and tamper not in TAMPERS:
        raise AdminError(400, f"tamper: null or one of {list(TAMPERS)}")
    if tamper in ("signature", "stale_timestamp") and (route is None or route.api_secret is None):
        raise AdminError(400, "these clicks are not signed (no apiSecret, or Stream mode)")
    if extras is not None and not isinstance(extras, bool):
        raise AdminError(400, "extras must be a boolean")
    return deliveries, tamper, bool(extras)


def _space_of(card: Card, userid: str) -> tuple[str, str]:
    """Where the user pressed: their robot chat, else the first group it reached."""
    reached = [d.space for d in card.delivered if d.error is None]
    mine = [s for s in reached if s.space_type == "IM_ROBOT" and s.space_id == userid]
    space = (mine or [s for s in reached if s.space_type == "IM_GROUP"])[0]
    return space.space_type, space.space_id


def _apply(card: Card, userid: str, delivery: Delivery, now: float) -> dict[str, Any]:
    """Apply a delivery's answer to the card -> the delivery's report."""
    report = asdict(delivery) | {"applied": False, "error": None}
    answer = answer_json(delivery)
    if answer is None or not {"cardData", "userPrivateData"} & answer.keys():
        return report
    try:
        update = answer_of(answer, card.out_track_id, userid)
    except Refused as exc:
        return report | {"error": exc.message}
    card.apply(update)
    card.updates.append({"at": now, "source": "click answer", "userid": userid, "body": answer})
    return report | {"applied": True}


async def click(simulator: DingTalkAppSimulator, data: dict[str, Any]) -> web.Response:
    app, card = _card(simulator, data)
    if card.callback_type == "STREAM":
        return await stream_click(simulator, app, card, data)
    route = _route(simulator, card)
    userid, action, params = _press(card, data)
    deliveries, tamper, extras = _options(data, route)
    now = simulator.records.clock()
    space_type, space_id = _space_of(card, userid)
    event = Click(app.corp_id, card.out_track_id, userid, action, params, space_type, space_id)
    body, headers = event.body(tamper, extras), signed_headers(route.api_secret, now, tamper)
    card.clicks.append(
        {"at": now, "userid": userid, "action_id": action, "params": params}
        | {"deliveries": deliveries, "tamper": tamper, "headers": headers, "body": body.decode()}
    )
    reports = []
    for _ in range(deliveries):
        delivery = await post(route.url, body, headers, simulator.callback_deadline)
        reports.append(_apply(card, userid, delivery, simulator.records.clock()))
    answer = {"out_track_id": card.out_track_id, "userid": userid, "action_id": action}
    return web.json_response(answer | {"params": params, "deliveries": reports})


def _count(data: dict[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise AdminError(400, f"{key} must be an integer 0..10")
    return value


def _stream_report(card: Card, userid: str, sent: Sent, repush: bool, now: float) -> Report:
    """Apply a push's ack to the card -> the push's report."""
    report: Report = {"acked": sent.ack is not None, "ack": sent.ack, "seconds": sent.seconds}
    report |= {"connection": sent.connection, "repush": repush, "applied": False}
    report |= {"error": sent.error}
    try:
        data = json.loads(sent.ack["data"]) if sent.ack is not None else None
    except (TypeError, ValueError):
        return report | {"error": "the ack's data is not a JSON string"}
    answer = data.get("response") if isinstance(data, dict) else None
    if sent.ack is None or sent.ack.get("code") != 200 or not isinstance(answer, dict):
        return report
    if not {"cardData", "userPrivateData"} & answer.keys():
        return report
    try:
        update = answer_of(answer, card.out_track_id, userid)
    except Refused as exc:
        return report | {"error": exc.message}
    card.apply(update)
    card.updates.append({"at": now, "source": "stream ack", "userid": userid, "body": answer})
    return report | {"applied": True}


def _targets(simulator: DingTalkAppSimulator, app: App, data: dict[str, Any]) -> str | None:
    """The connection a click must go to (None: any), or 409 if none can take it."""
    named, live = data.get("connection"), simulator.stream.live(app.name, "CALLBACK", CARD_TOPIC)
    if not live:
        raise AdminError(409, f"{app.name!r} has no live stream connection subscribed to the topic")
    if named is not None and named not in {c.id for c in live}:
        raise AdminError(409, f"connection {named!r} is not live or not subscribed")
    return str(named) if named is not None else None


async def stream_click(
    simulator: DingTalkAppSimulator, app: App, card: Card, data: dict[str, Any]
) -> web.Response:
    """A click on a STREAM card: one CALLBACK message pushed `deliveries` times, each
    re-pushed while unacked (`repushes`, default the simulator's)."""
    userid, action, params = _press(card, data)
    deliveries, tamper, _ = _options(data, None)
    repushes = _count(data, "repushes", simulator.stream.repushes)
    named = _targets(simulator, app, data)
    stream, now = simulator.stream, simulator.records.clock()
    space_type, space_id = _space_of(card, userid)
    event = Click(app.corp_id, card.out_track_id, userid, action, params, space_type, space_id)
    body, message_id = event.body(tamper, extras=True).decode(), stream.message_id()

    def frame_for(connection: Connection) -> dict[str, Any]:
        return stream.frame("CALLBACK", CARD_TOPIC, body, message_id, app.app_key, connection.id)

    card.clicks.append(
        {"at": now, "userid": userid, "action_id": action, "params": params, "mode": "stream"}
        | {"deliveries": deliveries, "tamper": tamper, "message_id": message_id, "data": body}
    )
    reports = []
    for _ in range(deliveries):
        try:
            first = stream.pick(app.name, "CALLBACK", CARD_TOPIC, only=named)
        except LookupError as exc:
            raise AdminError(409, f"no live stream connection to push to: {exc}") from exc
        for sent, repush in await stream.push(frame_for, first, repushes):
            reports.append(_stream_report(card, userid, sent, repush, simulator.records.clock()))
    answer: Report = {"out_track_id": card.out_track_id, "userid": userid, "action_id": action}
    answer |= {"params": params, "message_id": message_id}
    return web.json_response(answer | {"deliveries": reports})


async def _connections(simulator: DingTalkAppSimulator, data: dict[str, Any]) -> web.Response:
    channel = data.get("channel")
    found = [c.as_json() for c in simulator.stream.connections.values()]
    return web.json_response([c for c in found if channel in (None, c["channel"])])


async def _disconnect(simulator: DingTalkAppSimulator, data: dict[str, Any]) -> web.Response:
    app = _app(simulator, data)
    gone = simulator.stream.disconnect(app.name, app.app_key)
    grace = simulator.stream.disconnect_grace
    return web.json_response({"disconnected": [c.id for c in gone], "grace_seconds": grace})


async def _ping(simulator: DingTalkAppSimulator, data: dict[str, Any]) -> web.Response:
    app = _app(simulator, data)
    return web.json_response({"pings": await simulator.stream.ping(app.name, app.app_key)})


Call = Callable[["DingTalkAppSimulator", dict[str, Any]], Awaitable[web.Response]]


def add_routes(app: web.Application, key: web.AppKey[DingTalkAppSimulator]) -> None:
    def listed(name: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            channel = request.query.get("channel")
            found = getattr(request.app[key].state, name).values()
            return web.json_response([c.as_json() for c in found if channel in (None, c.channel)])

        return handle

    async def expire(request: web.Request) -> web.Response:
        expired = request.app[key].state.expire_tokens(request.query.get("channel"))
        return web.json_response({"ok": True, "expired": expired})

    def posted(call: Call) -> Any:
        async def handle(request: web.Request) -> web.Response:
            if request.method == "GET":
                data: Any = dict(request.query)
            else:
                try:
                    data = await request.json()
                except ValueError:
                    data = None
            if not isinstance(data, dict):
                return web.json_response({"error": "the body is a JSON object"}, status=400)
            try:
                return await call(request.app[key], data)
            except AdminError as exc:
                return web.json_response({"error": exc.message}, status=exc.status)

        return handle

    app.router.add_get("/admin/dingtalk-app/cards", listed("cards"))
    app.router.add_get("/admin/dingtalk-app/routes", listed("routes"))
    app.router.add_post("/admin/dingtalk-app/expire-tokens", expire)
    app.router.add_post("/admin/dingtalk-app/click", posted(click))
    app.router.add_get("/admin/dingtalk-app/connections", posted(_connections))
    app.router.add_post("/admin/dingtalk-app/stream/disconnect", posted(_disconnect))
    app.router.add_post("/admin/dingtalk-app/stream/ping", posted(_ping))
