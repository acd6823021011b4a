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
  404: no such card; 409: the card is not an HTTP-callback card, its route is not registered,
  or that user cannot press that button now (`dingtalk_app_card.actions`).
"""

from __future__ import annotations

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

if TYPE_CHECKING:
    from devstack.receivers.dingtalk_app import App, DingTalkAppSimulator

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


def _card(simulator: DingTalkAppSimulator, data: dict[str, Any]) -> tuple[App, Card, Route]:
    app = simulator.by_name.get(_string(data, "channel"))
    if app is None:
        raise AdminError(404, f"no dingtalk_app channel {data['channel']!r}")
    track = _string(data, "out_track_id")
    card = simulator.state.cards.get((app.name, track))
    if card is None:
        raise AdminError(404, f"no card {track!r} of channel {app.name!r}")
    if card.callback_type != "HTTP" or card.route_key is None:
        raise AdminError(409, f"card {track!r} has callbackType {card.callback_type}, not HTTP")
    route = simulator.state.routes.get((app.name, card.route_key))
    if route is None:
        raise AdminError(409, f"callbackRouteKey {card.route_key!r} is not registered")
    return app, card, route


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


def _options(data: dict[str, Any], route: Route) -> tuple[int, Any, bool]:
    deliveries, tamper, extras = data.get("deliveries", 1), data.get("tamper"), data.get("extras")
    if isinstance(deliveries, bool) or not isinstance(deliveries, int):
        raise AdminError(400, "deliveries must be an integer")
    if not 1 <= deliveries <= MOST_DELIVERIES:
        raise AdminError(400, f"deliveries: 1..{MOST_DELIVERIES}")
    if tamper is not None and tamper not in TAMPERS:
        raise AdminError(400, f"tamper: null or one of {list(TAMPERS)}")
    if tamper in ("signature", "stale_timestamp") and route.api_secret is None:
        raise AdminError(400, "the route has no apiSecret: its clicks are not signed")
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
    app, card, route = _card(simulator, data)
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

    async def pressed(request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return web.json_response({"error": "the body is a JSON object"}, status=400)
        try:
            return await click(request.app[key], data)
        except AdminError as exc:
            return web.json_response({"error": exc.message}, status=exc.status)

    app.router.add_get("/admin/dingtalk-app/cards", listed("cards"))
    app.router.add_get("/admin/dingtalk-app/routes", listed("routes"))
    app.router.add_post("/admin/dingtalk-app/expire-tokens", expire)
    app.router.add_post("/admin/dingtalk-app/click", pressed)
