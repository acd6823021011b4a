"""The WeCom app simulator's admin endpoints: what WeCom's users and admins do, and what
WeCom holds, for tests and the demo (`devstack.receivers.wecom_app`).

- `GET /admin/wecom-app/cards[?channel=NAME]`: the cards sent, each `{"channel", "task_id",
  "msgid", "recipients", "card"` (as everyone sees it now), `"replaced_name"` (the text of
  the one disabled button a `button.replace_name` update left, else null), `"per_user"`,
  `"per_party"`, `"per_tag"` (views of updates that named them), `"updates"`, `"clicks"}`.
- `POST /admin/wecom-app/expire-tokens[?channel=NAME]`: every token issued so far answers
  42001; the next gettoken issues a new one.
- `POST /admin/wecom-app/click` `{"channel", "task_id", "userid", "event_key",
  "callback_url", "selected": [{"question_key", "option_ids": [one id]}] (default: the
  dropdown's selected option, as WeCom sends it), "deliveries": 1..4 (1 + WeCom's three
  retries), "tamper": null | "signature" | "corp" | "stale_timestamp"}`: a member clicks;
  a new single-use ResponseCode is issued and the encrypted `template_card_event` is POSTed
  (`wecom_app_callback`) -> `{"response_code", "create_time", "deliveries": [{"status",
  "body", "seconds", "timed_out"}]}`. 409 when that member has no such button to click.
- `POST /admin/wecom-app/verify-url` `{"channel", "callback_url"}`: the URL check WeCom makes
  when an admin saves the receive URL -> `{"ok", "status", "body", "seconds", "timed_out"}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from devstack.receivers.wecom_app_callback import TAMPERS, Click, check_url, deliver_click
from devstack.receivers.wecom_app_state import Card, View

if TYPE_CHECKING:
    from devstack.receivers.wecom_app import App, WeComAppSimulator

MOST_DELIVERIES = 4  # "总共重试三次" (/90238): the first delivery and three retries


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


def _app(simulator: WeComAppSimulator, data: dict[str, Any]) -> App:
    app = simulator.by_name.get(_string(data, "channel"))
    if app is None:
        raise AdminError(404, f"no wecom_app channel {data['channel']!r}")
    return app


def _url(data: dict[str, Any]) -> str:
    url = _string(data, "callback_url")
    if not url.startswith(("http://", "https://")):
        raise AdminError(400, "callback_url must be an http(s) URL")
    return url


def _callback(app: App) -> tuple[str, str]:
    if app.callback is None or len(app.callback) != 2:
        raise AdminError(400, f"channel {app.name!r} has no callback token and EncodingAESKey")
    token, key = app.callback
    return token, key


def _target(simulator: WeComAppSimulator, data: dict[str, Any]) -> tuple[App, Card, str, str]:
    """The app, card, member and button of a click, or `AdminError`."""
    app = _app(simulator, data)
    task_id, userid, key = (_string(data, k) for k in ("task_id", "userid", "event_key"))
    card = simulator.state.cards.get((app.name, task_id))
    if card is None:
        raise AdminError(404, f"no card {task_id!r} of channel {app.name!r}")
    if not card.reaches(userid):
        raise AdminError(409, f"the card did not go to {userid!r}")
    keys = card.view_of(userid).keys()
    if key not in keys:
        raise AdminError(409, f"{userid!r} has no button {key!r} to click (has {keys})")
    return app, card, userid, key


def _selected(data: dict[str, Any], view: View) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The dropdown's choice sent with the click: given, or the one the card shows."""
    selection = view.card.get("button_selection")
    given = data.get("selected")
    if not isinstance(selection, dict):
        if given:
            raise AdminError(400, "the card has no button_selection to choose from")
        return ()
    question, options = selection["question_key"], [o["id"] for o in selection["option_list"]]
    if given is None:
        shown = selection.get("selected_id")
        return ((question, (str(shown) if shown in options else options[0],)),)
    item = given[0] if isinstance(given, list) and len(given) == 1 else None
    ids = item.get("option_ids") if isinstance(item, dict) else None
    if not isinstance(item, dict) or item.get("question_key") != question:
        raise AdminError(400, f"selected: one item, question_key {question!r}")
    if not isinstance(ids, list) or len(ids) != 1 or ids[0] not in options:
        raise AdminError(400, f"selected.option_ids: one of {options}")
    return ((question, (str(ids[0]),)),)


def _options(data: dict[str, Any]) -> tuple[int, Any]:
    deliveries, tamper = data.get("deliveries", 1), data.get("tamper")
    if isinstance(deliveries, bool) or not isinstance(deliveries, int):
        raise AdminError(400, "deliveries must be an integer")
    if not 1 <= deliveries <= MOST_DELIVERIES:
        raise AdminError(400, f"deliveries: 1..{MOST_DELIVERIES} (WeCom retries three times)")
    if tamper is not None and tamper not in TAMPERS:
        raise AdminError(400, f"tamper: null or one of {list(TAMPERS)}")
    return deliveries, tamper


async def click(simulator: WeComAppSimulator, data: dict[str, Any]) -> web.Response:
    app, card, userid, key = _target(simulator, data)
    callback, url = _callback(app), _url(data)
    selected = _selected(data, card.view_of(userid))
    deliveries, tamper = _options(data)
    now = simulator.records.clock()
    code = simulator.state.issue_code(card, now, "click", userid)
    event = Click(app.corp_id, app.agent_id, userid, int(now), key, card.task_id, code, selected)
    card.clicks.append(
        {"at": now, "userid": userid, "event_key": key, "response_code": code}
        | {"selected": [{"question_key": q, "option_ids": list(i)} for q, i in selected]}
        | {"deliveries": deliveries, "tamper": tamper}
    )
    clock, deadline = simulator.records.clock, simulator.callback_deadline
    sent = await deliver_click(event, callback, url, clock, deliveries, tamper, deadline)
    return web.json_response({"response_code": code, "create_time": int(now), "deliveries": sent})


async def verify_url(simulator: WeComAppSimulator, data: dict[str, Any]) -> web.Response:
    app = _app(simulator, data)
    callback, url = _callback(app), _url(data)
    found = await check_url(
        callback, app.corp_id, url, simulator.records.clock(), simulator.url_check_deadline
    )
    return web.json_response(found)


def add_routes(app: web.Application, key: web.AppKey[WeComAppSimulator]) -> None:
    async def cards(request: web.Request) -> web.Response:
        channel = request.query.get("channel")
        found = request.app[key].state.cards.values()
        return web.json_response([c.as_json() for c in found if channel in (None, c.channel)])

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

    app.router.add_get("/admin/wecom-app/cards", cards)
    app.router.add_post("/admin/wecom-app/expire-tokens", expire)
    app.router.add_post("/admin/wecom-app/click", posted(click))
    app.router.add_post("/admin/wecom-app/verify-url", posted(verify_url))
