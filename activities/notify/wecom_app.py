"""WeCom self-built app (企业微信自建应用): the API riskflow's app channel speaks.

- Token (developer.work.weixin.qq.com/document/path/91039): `GET {base}/cgi-bin/gettoken
  ?corpid=&corpsecret=` -> `{"errcode": 0, "access_token": ..., "expires_in": 7200}`. Within
  its validity the same token comes back; it can still die early, so a call answered 40014
  (invalid), 42001 (expired) or 41001 (missing) drops it and is made once more with a new one.
  Kept per process (`WeComApp`), fetched by one caller at a time, renewed 5 minutes early.
- Send (document/path/90236): `POST {base}/cgi-bin/message/send?access_token=` with
  `msgtype: template_card` (`activities.notify.wecom_card` builds it) -> `{"errcode": 0,
  "msgid": ..., "response_code": ...}`. `enable_duplicate_check` makes a resend of the same
  JSON within the interval (at most 4 h) no second message, so the app is redeliverable.
- Update (document/path/94888): `POST {base}/cgi-bin/message/update_template_card
  ?access_token=` with a click's single-use `response_code` -> `{"errcode": 0}`.

Codes: 45009 / 45033 (frequency) are retried after a minute, -1 (busy: "稍候再试") at once;
40013 (corp id), 40001 (secret), 40056 (agent id), 40058 / 40008 (parameter, type), 45002 (too
large), 48002 (API not permitted), 60011 / 81013 / 82001 (no recipient the app may reach),
60020 (server IP not on the app's allow list), 60140 / 42015 / 42016 (an update's response
code spent, expired or another card's) and a few more are not retried; 42014 (task id
taken) means an earlier attempt of the same message was delivered; any other code is
retried. WeCom drops messages beyond 30 a minute / 1,000 an hour to one member without
saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp

from activities.notify import errors
from activities.notify.app_token import AccessToken, fetch_json, lifetime
from activities.notify.errors import Refused, TokenRefused
from activities.notify.http import HttpRequest, Vendor, code_of, json_body, post
from riskflow.contracts.notifications import NOTIFY_CHANNEL_ERROR, NOTIFY_REJECTED

RATE_CODES = frozenset({45009, 45033})  # over a frequency: wait out the minute
TOKEN_CODES = frozenset({40014, 42001, 41001})
TASK_ID_TAKEN = 42014  # "taskid has existed or empty or exceed max len"
CONFIG_CODES = frozenset(
    {40001, 40003, 40008, 40013, 40056, 40058, 41002, 41004, 45002, 48002, 60011, 60020}
    | {81013, 82001, 301002}
    | {60140, 42015, 42016}  # update: a response code spent, expired or another app's
)
_SKIPPED = ("invaliduser", "invalidparty", "invalidtag", "unlicenseduser")


class TaskIdTaken(Refused):
    """42014: the card's task id was used before. Task ids are one per message
    (`wecom_card.task_id`), so an earlier attempt of this message was delivered."""


def check(answer: Any) -> str:
    """The detail of a 0 answer (msgid, response code, and the recipients WeCom skipped),
    else `Refused`."""
    code, message = code_of(answer, "errcode")
    text = f"WeCom answered code {code}: {message[:200]}"
    if code in TOKEN_CODES:
        raise TokenRefused(NOTIFY_CHANNEL_ERROR, text)
    if code == TASK_ID_TAKEN:
        raise TaskIdTaken(NOTIFY_REJECTED, text)
    if code != 0:
        raise errors.vendor_code("WeCom app", code, message, RATE_CODES, CONFIG_CODES)
    parts = [f"{k}={answer[k]}" for k in ("msgid", "response_code") if answer.get(k)]
    parts += [f"{k}={answer[k]}" for k in _SKIPPED if answer.get(k)]  # not delivered to these
    return " ".join(parts) or message or "ok"


def _unused_build(*args: Any) -> HttpRequest:  # requests are built by `WeComApp`, not here
    raise NotImplementedError


WECOM_APP = Vendor("wecom_app", _unused_build, check, str, redeliverable=True)


class WeComApp:
    """One app: `base` the API's URL (no trailing slash), `corp_id`, `agent_id`, `secret`;
    calls go through `session` with `timeout_seconds` each; `clock` in seconds."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: str,
        corp_id: str,
        agent_id: int,
        secret: str,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent_id = agent_id
        self._session = session
        self._base = base.rstrip("/")
        self._corp_id = corp_id
        self._secret = secret
        self._timeout = timeout_seconds
        self._token = AccessToken(self._fetch_token, clock)

    async def send(self, message: dict[str, Any]) -> str:
        """`message/send`: the answer's detail; `Refused` or `Uncertain` as `http.post`. A
        card whose task id WeCom already has was delivered by an earlier attempt."""
        try:
            return await self._call("message/send", message)
        except TaskIdTaken as exc:
            return f"delivered before ({exc})"

    async def update_card(self, update: dict[str, Any]) -> str:
        """`message/update_template_card` (`agentid` added)."""
        body = {**update, "agentid": self.agent_id}
        return await self._call("message/update_template_card", body)

    async def _call(self, path: str, payload: dict[str, Any]) -> str:
        body = json_body(payload)

        async def call(token: str) -> str:
            url = f"{self._base}/cgi-bin/{path}?access_token={token}"
            return await post(self._session, WECOM_APP, HttpRequest(url, body), self._timeout)

        return await self._token.using(call)

    async def _fetch_token(self) -> tuple[str, float]:
        url = f"{self._base}/cgi-bin/gettoken"
        params = {"corpid": self._corp_id, "corpsecret": self._secret}
        answer = await fetch_json(
            self._session, "WeCom gettoken", "GET", url, self._timeout, params=params
        )
        code, message = code_of(answer, "errcode")
        token = answer.get("access_token") if code == 0 else None
        if not isinstance(token, str) or not token:
            if code == 0:
                raise errors.failed(f"WeCom gettoken answered no token: {str(answer)[:200]}")
            raise errors.vendor_code("WeCom gettoken", code, message, RATE_CODES, CONFIG_CODES)
        return token, lifetime(answer.get("expires_in"))
