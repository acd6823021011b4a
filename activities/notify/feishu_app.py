"""Feishu / Lark custom app (企业自建应用): the API riskflow's `feishu_app` channel speaks.

- Token (open.feishu.cn/document/server-docs/authentication-management/access-token/
  tenant_access_token_internal): `POST {base}/open-apis/auth/v3/tenant_access_token/internal`
  `{"app_id", "app_secret"}` -> `{"code": 0, "tenant_access_token": "t-...", "expire": 7200}`;
  kept by `app_token.AccessToken` (Feishu hands out a new one within its last 30 minutes, the
  old one still valid). A call answered 99991663 (invalid) or 99991661 (missing), with HTTP
  200 or 400, drops it and is made once more.
- Send (server-docs/im-v1/message/create): `POST {base}/open-apis/im/v1/messages
  ?receive_id_type=` with `Authorization: Bearer <token>` and `{"receive_id", "msg_type":
  "interactive", "content": <card JSON as a string>, "uuid"}` -> `{"code": 0, "data":
  {"message_id": "om_..."}}`. One recipient per call; the `uuid` (`feishu_card.uuid`) makes a
  resend within an hour no second message, so the channel is redeliverable.
- Update (server-docs/im-v1/message-card/patch): `PATCH {base}/open-apis/im/v1/messages/
  {message_id}` `{"content"}`: the shared card, for everyone, within 14 days of sending.

Codes (server-docs/api-call-guide/generic-error-code, im-v1 error tables): 99991400 (the
platform's frequency limit), 230020 (a chat's or person's message rate), 11232 and 11233 are
retried after a minute; 10003 / 10014 / 10015 (app id or secret), 99991664 / 99991665 /
99991671 / 99991672 / 99991668 (token kind or permission), 99992402 (field validation),
230001 (parameter), 230006 (bot ability off), 230025 (too long), 230027 (permission),
230031 (the card can no longer be updated), 230011 / 230110 (recalled or deleted) and 230099
("Failed to create card content": the card refused, unless the card is locked by another
update at that moment) are not retried; any other code is (18121 and 230049: the same
request still being processed; 1500, 2200, 5000, 11246: Feishu's own errors), whatever the
HTTP status (Feishu answers them all with 400). A recipient out of reach (230002 the bot not
in the chat, 230013 outside the app's availability, 230029 resigned, 230035 not permitted,
230053 the bot blocked, 232009 the chat dissolved) is `RecipientRefused`: the message still
goes to the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp

from activities.notify import errors
from activities.notify.app_token import AccessToken, fetch_json, lifetime
from activities.notify.errors import RecipientRefused, TokenRefused
from activities.notify.http import HttpRequest, Vendor, code_of, json_body, post
from riskflow.contracts.notifications import NOTIFY_CHANNEL_ERROR, NOTIFY_REJECTED

RATE_CODES = frozenset({99991400, 230020, 11232, 11233})
TOKEN_CODES = frozenset({99991663, 99991661})
# One recipient out of reach: the bot not in the chat (230002), the person outside the app's
# availability (230013), resigned (230029), sending not permitted (230035), the bot blocked
# (230053), the chat dissolved (232009).
RECIPIENT_CODES = frozenset({230002, 230013, 230029, 230035, 230053, 232009})
CARD_CONTENT = 230099  # "Failed to create card content, ext=ErrCode: ..."
CONFIG_CODES = frozenset(
    {10003, 10014, 10015, 99991664, 99991665, 99991668, 99991671, 99991672, 99992402}
    | {230001, 230006, 230025, 230027, 230031, 230011, 230110}
)


def check(answer: Any) -> str:
    """The message id of a 0 answer (else "ok"), or `Refused`."""
    code, message = code_of(answer, "code")
    text = f"Feishu answered code {code}: {message[:200]}"
    if code in TOKEN_CODES:
        raise TokenRefused(NOTIFY_CHANNEL_ERROR, text)
    if code in RECIPIENT_CODES:
        raise RecipientRefused(NOTIFY_REJECTED, text)
    if code == CARD_CONTENT and "lock" not in message.lower():
        raise errors.rejected(text)  # the card itself was refused: sending it again cannot help
    if code != 0:
        raise errors.vendor_code("Feishu app", code, message, RATE_CODES, CONFIG_CODES)
    data = answer.get("data")
    found = data.get("message_id") if isinstance(data, dict) else None
    return found if isinstance(found, str) and found else "ok"


def _unused_build(*args: Any) -> HttpRequest:  # requests are built by `FeishuApp`, not here
    raise NotImplementedError


FEISHU_APP = Vendor(
    "feishu_app", _unused_build, check, str, redeliverable=True, codes_over_status=True
)


class FeishuApp:
    """One app: `base` the API's URL (no trailing slash), `app_id`, `secret` (App Secret);
    calls go through `session` with `timeout_seconds` each; `clock` in seconds."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: str,
        app_id: str,
        secret: str,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._base = base.rstrip("/")
        self._app_id = app_id
        self._secret = secret
        self._timeout = timeout_seconds
        self._token = AccessToken(self._fetch_token, clock)

    async def send(
        self, receive_id_type: str, receive_id: str, msg_type: str, content: str, uuid: str
    ) -> str:
        """One message to one recipient: its message id; `Refused` or `Uncertain`."""
        path = f"/open-apis/im/v1/messages?receive_id_type={receive_id_type}"
        body = {"receive_id": receive_id, "msg_type": msg_type, "content": content, "uuid": uuid}
        return await self._call("POST", path, body)

    async def update(self, message_id: str, content: str) -> str:
        """The shared card `message_id` replaced by `content` for everyone."""
        return await self._call(
            "PATCH", f"/open-apis/im/v1/messages/{message_id}", {"content": content}
        )

    async def tell(self, open_id: str, card: str, uuid: str) -> str:
        """A card (`content`) from the app's bot to one person, by open id."""
        return await self.send("open_id", open_id, "interactive", card, uuid)

    async def _call(self, method: str, path: str, payload: dict[str, Any]) -> str:
        body = json_body(payload)

        async def call(token: str) -> str:
            headers = {"Authorization": f"Bearer {token}"}
            request = HttpRequest(self._base + path, body, headers, method)
            return await post(self._session, FEISHU_APP, request, self._timeout)

        return await self._token.using(call)

    async def _fetch_token(self) -> tuple[str, float]:
        url = f"{self._base}/open-apis/auth/v3/tenant_access_token/internal"
        answer = await fetch_json(
            self._session,
            "Feishu tenant_access_token",
            "POST",
            url,
            self._timeout,
            check,
            json={"app_id": self._app_id, "app_secret": self._secret},
        )
        code, message = code_of(answer, "code")
        token = answer.get("tenant_access_token") if code == 0 else None
        if not isinstance(token, str) or not token:
            if code == 0:
                raise errors.failed("Feishu answered no tenant_access_token")
            raise errors.vendor_code("Feishu token", code, message, RATE_CODES, CONFIG_CODES)
        return token, lifetime(answer.get("expire"))
