"""A local simulator of the WeCom self-built app API (企业微信自建应用) for `wecom_app`
channels, at `/wecom-app/{name}` (`riskflow.config.channels.LOCAL_PATHS`; `{name}` the
channel's name, or the last path segment of its configured URL), following
developer.work.weixin.qq.com/document/path/... :

- `GET .../cgi-bin/gettoken?corpid=&corpsecret=` (91039): `{"access_token", "expires_in"}`,
  the same token while it lasts (7200 s; `expires_in` says what is left). 41002/41004
  missing corpid/corpsecret, 40013 another corp id, 40001 another secret.
- `POST .../cgi-bin/message/send?access_token=` (90236): a `template_card` of type
  `button_interaction` checked strictly (`wecom_app_card`), or text/markdown ->
  `{"errcode": 0, "invaliduser": "", "msgid", "response_code"}` (a card's code). 41001 no
  token, 40014 unknown, 42001 expired (91039: tokens may end early, see expire-tokens). A
  `task_id` is the app's for ever: reused, 40058 (the docs give no code for it: "同一个应用任务
  id不能重复"). `enable_duplicate_check`: the same JSON within `duplicate_check_interval` is
  answered with the first send's msgid and response_code and sends nothing (the docs do not
  say what WeCom answers). A channel's `records.limits` answer 45009 (the frequency code of
  90313/90312; WeCom silently drops a member's 31st message a minute, not simulated).
- `POST .../cgi-bin/message/update_template_card?access_token=` (94888): targets
  (`atall`/`userids`/`partyids`/`tagids`), `response_code`, and `button.replace_name` or a
  `template_card` of the same `task_id` (else 42016 "更新的 task_id 不存在"). A code is
  single-use and lasts 72 h; unknown, used or expired: 60140 (90313: "无效的 response_code，
  可能是 response_code 已经过期"); another app's: 42015. A userid the card did not go to comes
  back in `invaliduser` (a list here; 94888's answer shape was not confirmed).
- `records.fault_for(name)` scripts the answer of send and update (after their checks), as
  for the robots (`devstack.receivers.server`); with `delay_seconds` the call takes effect and
  is answered late.

Admin (what WeCom's users and admins do), in `wecom_app_admin`: `GET /admin/wecom-app/cards
[?channel=]`, `POST /admin/wecom-app/expire-tokens[?channel=]`, `POST /admin/wecom-app/click`,
`POST /admin/wecom-app/verify-url`. `POST /admin/reset` forgets everything here too.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from devstack.receivers import wecom_app_admin as admin
from devstack.receivers.records import Records
from devstack.receivers.wecom_app_card import Invalid
from devstack.receivers.wecom_app_requests import (
    MOST_DUPLICATE_SECONDS,
    Recipients,
    Send,
    Update,
    check_send,
    check_update,
    errmsg,
)
from devstack.receivers.wecom_app_state import Card, Code, Sent, State, View
from riskflow.config.channels import ChannelSecrets, NotificationSettings, WeComAppChannel

VENDOR = "wecom_app"


@dataclass(frozen=True)
class App:
    """A `wecom_app` channel as WeCom knows the app."""

    name: str
    corp_id: str
    agent_id: int
    secret: str
    callback: tuple[str, ...] | None  # the receive URL's token and EncodingAESKey


def apps_of(config: NotificationSettings, secrets: ChannelSecrets) -> dict[str, App]:
    """The apps by the path segment after /wecom-app/."""
    found: dict[str, App] = {}
    for name, channel in config.channels.items():
        if not isinstance(channel, WeComAppChannel):
            continue
        url = secrets.url(name)
        segment = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] if url else name
        secret = secrets.secret(name) or ""
        app = App(name, channel.corp_id, channel.agent_id, secret, secrets.callback(name))
        found[segment] = app
    return found


class WeComAppSimulator:
    """The simulator's apps and state; `callback_deadline` (WeCom: 5 s) and
    `url_check_deadline` (1 s) bound how long a click or URL check waits for the product."""

    def __init__(
        self,
        config: NotificationSettings,
        secrets: ChannelSecrets,
        records: Records,
        *,
        callback_deadline: float = 5.0,
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

    def refuse(self, channel: str, code: int, message: str) -> web.Response:
        self.records.refuse(channel, VENDOR, f"{code} {message}")
        return web.json_response({"errcode": code, "errmsg": errmsg(code, message)})

    def gettoken(self, app: App, query: dict[str, str]) -> web.Response:
        corpid, secret = query.get("corpid", ""), query.get("corpsecret", "")
        if not corpid:
            return self.refuse(app.name, 41002, "corpid missing")
        if not secret:
            return self.refuse(app.name, 41004, "corpsecret missing")
        if corpid != app.corp_id:
            return self.refuse(app.name, 40013, "invalid corpid")
        if not hmac.compare_digest(secret.encode(), app.secret.encode()):
            return self.refuse(app.name, 40001, "invalid credential")
        token, seconds = self.state.token_for(app.name, self.records.clock())
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": seconds}
        )

    def authorize(self, app: App, query: dict[str, str]) -> web.Response | None:
        """None if the call's access_token is this app's and alive, else WeCom's refusal."""
        value = query.get("access_token", "")
        if not value:
            return self.refuse(app.name, 41001, "access_token missing")
        token = self.state.tokens.get(value)
        if token is None or token.channel != app.name:
            return self.refuse(app.name, 40014, "invalid access_token")
        if token.revoked or token.expires_at <= self.records.clock():
            return self.refuse(app.name, 42001, "access_token expired")
        return None

    async def send(self, app: App, raw: bytes) -> web.Response:
        try:
            message = check_send(raw, app.agent_id)
        except Invalid as exc:
            return self.refuse(app.name, exc.code, exc.message)
        fault = self.records.fault_for(app.name)
        if fault is not None and not fault.delay_seconds:
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        answer = self._send(app, message)
        if fault is not None:
            await asyncio.sleep(fault.delay_seconds)
        return answer

    def _send(self, app: App, message: Send) -> web.Response:
        now, state = self.records.clock(), self.state
        state.forget_old(now, MOST_DUPLICATE_SECONDS)
        task_id = message.card["task_id"] if message.card is not None else None
        if self.records.over_limit(app.name):
            return self.refuse(app.name, 45009, "api freq out of limit")
        seconds = message.duplicate_seconds
        sent = state.duplicate(app.name, message.digest, now, seconds) if seconds else None
        if sent is not None:  # WeCom's duplicate check: nothing goes out
            self.records.duplicates += 1
            return self._answer(message.recipients, sent)
        if task_id is not None and (app.name, task_id) in state.cards:
            return self.refuse(
                app.name, 40058, f"invalid Request Parameter: task_id {task_id} used already"
            )
        sent = Sent(now, secrets.token_urlsafe(24), "")
        if message.card is not None and task_id is not None:
            view = View(copy.deepcopy(message.card))
            card = Card(app.name, task_id, sent.msgid, message.recipients, view)
            state.cards[(app.name, task_id)] = card
            sent = Sent(now, sent.msgid, state.issue_code(card, now, "send"))
        state.recent[(app.name, message.digest)] = sent
        self.records.accept(
            app.name,
            VENDOR,
            message.body,
            title=message.title,
            task_id=task_id,
            msgid=sent.msgid,
            response_code=sent.response_code or None,
            warnings=message.warnings,
        )
        return self._answer(message.recipients, sent)

    @staticmethod
    def _answer(recipients: Recipients, sent: Sent) -> web.Response:
        answer = {"errcode": 0, "errmsg": "ok", **recipients.answer(), "msgid": sent.msgid}
        if sent.response_code:
            answer["response_code"] = sent.response_code
        return web.json_response(answer)

    async def update(self, app: App, raw: bytes) -> web.Response:
        try:
            update = check_update(raw, app.agent_id)
            code, card, targets = self._update_of(app, update)
        except Invalid as exc:
            return self.refuse(app.name, exc.code, exc.message)
        fault = self.records.fault_for(app.name)
        if fault is not None and not fault.delay_seconds:
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        code.used_at = now = self.records.clock()
        change = View(copy.deepcopy(update.card)) if update.card is not None else None
        card.apply(update.everyone, targets, change or str(update.replace_name))
        card.updates.append(
            {"at": now, "response_code": update.response_code, "code_from": code.source}
            | {"atall": int(update.everyone), "userids": targets.users}
            | {"partyids": targets.parties, "tagids": targets.tags}
            | ({"template_card": update.card} if update.card is not None else {})
            | ({"button": {"replace_name": update.replace_name}} if change is None else {})
            | {"warnings": update.warnings}
        )
        answer = {"errcode": 0, "errmsg": "ok", **targets.answer(as_list=True)}
        if fault is not None:
            await asyncio.sleep(fault.delay_seconds)
        return web.json_response(answer)

    def _update_of(self, app: App, update: Update) -> tuple[Code, Card, Recipients]:
        """The update's code, card and the targets the card went to, or `Invalid`."""
        code = self.state.codes.get(update.response_code)
        if code is None:
            raise Invalid(60140, "invalid response_code: not one WeCom gave")
        if code.channel != app.name:
            raise Invalid(42015, "the response_code is another app's card")
        if code.used_at is not None:
            raise Invalid(60140, "invalid response_code: used already (each works once)")
        if code.expires_at <= self.records.clock():
            raise Invalid(60140, "invalid response_code: expired")
        card = self.state.cards[(code.channel, code.task_id)]
        if update.card is not None and update.card["task_id"] != card.task_id:
            raise Invalid(42016, f"task_id {update.card['task_id']} is not this code's card")
        targets = update.recipients
        unknown = [u for u in targets.users if not card.reaches(u)]
        invalid = {"invaliduser": targets.invalid.get("invaliduser", []) + unknown}
        users = [u for u in targets.users if u not in unknown]
        if not (update.everyone or users or targets.parties or targets.tags):
            raise Invalid(81013, "user & party & tag all invalid")
        return code, card, Recipients(users, targets.parties, targets.tags, invalid)


SIMULATOR: web.AppKey[WeComAppSimulator] = web.AppKey("wecom_app_simulator")


def _app_of(request: web.Request) -> App | web.Response:
    simulator = request.app[SIMULATOR]
    name = request.match_info["name"]
    app = simulator.apps.get(name)
    if app is None:
        simulator.records.refuse(name, VENDOR, "no wecom_app channel of that name")
        return web.json_response({"error": f"no wecom_app channel {name!r}"}, status=404)
    return app


async def _gettoken(request: web.Request) -> web.Response:
    app = _app_of(request)
    if isinstance(app, web.Response):
        return app
    return request.app[SIMULATOR].gettoken(app, dict(request.query))


def _call(name: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        simulator, app = request.app[SIMULATOR], _app_of(request)
        if isinstance(app, web.Response):
            return app
        denied = simulator.authorize(app, dict(request.query))
        if denied is not None:
            return denied
        raw = await request.read()
        answer: web.Response = await getattr(simulator, name)(app, raw)
        return answer

    return handle


def add_routes(
    app: web.Application, config: NotificationSettings, secrets: ChannelSecrets, records: Records
) -> None:
    """The simulator's routes on the receiver's `app`, its state at `app[SIMULATOR]` (a test
    may put one of its own there before the app starts), cleared by `records.reset()`."""
    app[SIMULATOR] = WeComAppSimulator(config, secrets, records)
    records.on_reset.append(lambda: app[SIMULATOR].clear())
    base = "/wecom-app/{name}/cgi-bin"
    app.router.add_get(f"{base}/gettoken", _gettoken)
    app.router.add_post(f"{base}/message/send", _call("send"))
    app.router.add_post(f"{base}/message/update_template_card", _call("update"))
    admin.add_routes(app, SIMULATOR)
