"""DingTalk internal app (企业内部应用) with its robot: the API riskflow's `dingtalk_app`
channel speaks (open.dingtalk.com/document/development/...).

- Token (obtain-the-access_token-of-an-internal-app): `POST {base}/v1.0/oauth2/accessToken`
  `{"appKey", "appSecret"}` -> `{"accessToken", "expireIn": 7200}`; every other call sends it
  as `x-acs-dingtalk-access-token`. Kept by `app_token.AccessToken`; a call answered
  `InvalidAuthentication` (HTTP 400 / 401) drops it and is made once more.
- Send (create-and-deliver-cards): `POST {base}/v1.0/card/instances/createAndDeliver` with
  the card template's id, a deterministic `outTrackId` (one card per message and space), the
  template's variables in `cardData.cardParamMap` (strings only), `callbackType: "HTTP"` and
  the channel's `callbackRouteKey`, and the space (`openSpaceId`
  `dtv1.card//IM_GROUP.<openConversationId>` or `dtv1.card//IM_ROBOT.<userId>`, with its
  deliver model naming the robot, `robotCode` = the app key) -> `{"success": true, "result":
  {"deliverResults": [{"success", "errorMsg", ...}]}}`. A failed deliver result (a group the
  robot is not in, a person outside the app's reach) is a rejected send, not retried: the
  card exists from then on, so a retry would be refused as existing. The same `outTrackId`
  again is refused as existing (`param.cardAlreadyExist`): an earlier attempt delivered it.
- Update (interactive-card-update-interface): `PUT {base}/v1.0/card/instances` `{"outTrackId",
  "cardData", "privateData", "cardUpdateOptions": {"updateCardDataByKey": true,
  "updatePrivateDataByKey": true}}` (without the options DingTalk replaces all the data).
- Callback route (register-card-callback-address): `POST {base}/v1.0/card/callbacks/register`
  `{"callbackRouteKey", "callbackUrl", "apiSecret", "forceUpdate"}`.

Errors come as an HTTP error status with `{"code", "message", "requestid"}` (how-to-process-
api-throttling-on-the-dingtalk-server): `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi` /
`QpsLimitForApi` (403) and an IP ban are retried after a minute; `invalidClientIdOrSecret`,
`param.*`, `Forbidden.AccessDenied.AccessTokenPermissionDenied` and `ApiCountLimitForOrg`
are not retried; anything else is.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from activities.notify import errors
from activities.notify.app_token import AccessToken, fetch_json, lifetime
from activities.notify.errors import Refused, TokenRefused
from activities.notify.http import HttpRequest, Vendor, json_body, post
from riskflow.contracts.notifications import NOTIFY_CHANNEL_ERROR, NOTIFY_REJECTED

logger = logging.getLogger(__name__)
TOKEN_CODES = frozenset({"InvalidAuthentication", "AuthenticationFailed.MissingParameter"})
QPS_PREFIX = "Forbidden.AccessDenied.QpsLimit"  # ...ForAppkeyAndApi, ...ForApi
QPS_RETRY_SECONDS = 2.0
MONTHLY_QUOTA = "Forbidden.AccessDenied.ApiCountLimitForOrg"
BANNED_STATUS, BAN_SECONDS = 1111, 300.0  # an IP over 10,000 calls in 20 s: 5 minutes
CONTENT_UNSAFE = "param.contentUnsafe"
CARD_EXISTS = frozenset({"param.cardAlreadyExist", "param.cardAlreadyExists"})
CONFIG_CODES = frozenset(
    {
        "invalidClientIdOrSecret",
        "Forbidden.AccessDenied.AccessTokenPermissionDenied",
    }
)


class CardExists(Refused):
    """The card's `outTrackId` exists: an earlier attempt of this message delivered it."""


class ContentUnsafe(Refused):
    """`param.contentUnsafe`: the card's data did not pass DingTalk's content review (the
    model's words about an injury, a fire): send a card without them instead."""


def check(answer: Any) -> str:
    """The detail of a success, else `Refused` (`TokenRefused`, `CardExists`, rate limited,
    rejected or failed): the checks every call's answer passes."""
    if not isinstance(answer, dict):
        raise errors.failed(f"DingTalk answered {str(answer)[:200]}")
    if answer.get("status") == BANNED_STATUS:  # an IP ban: {"status": 1111, "wait": 5, ...}
        raise errors.rate_limited(f"DingTalk banned this IP: {str(answer)[:200]}", BAN_SECONDS)
    code = answer.get("code")
    if isinstance(code, str) and code:
        raise _refusal(code, str(answer.get("message") or ""))
    if answer.get("success") is False:
        raise errors.failed(f"DingTalk answered success=false: {str(answer)[:200]}")
    return "ok"


def check_delivery(answer: Any) -> str:
    """`createAndDeliver`'s answer: each space's `deliverResults` entry. None delivered:
    rejected (the card exists from now on: a retry would find it existing); some: the
    detail names those refused."""
    check(answer)
    result = answer.get("result")
    delivered = result.get("deliverResults") if isinstance(result, dict) else None
    if not isinstance(delivered, list) or not delivered:
        raise errors.failed(f"DingTalk answered no deliverResults: {str(answer)[:200]}")
    refused = [r for r in delivered if not (isinstance(r, dict) and r.get("success") is True)]
    why = "; ".join(
        f"{r.get('spaceType', '?')}.{r.get('spaceId', '?')}: {r.get('errorMsg') or '?'}"
        for r in refused
        if isinstance(r, dict)
    )
    if len(refused) == len(delivered):
        raise errors.rejected(f"DingTalk delivered the card nowhere: {why[:300]}")
    taken = f"delivered to {len(delivered) - len(refused)} of {len(delivered)} space(s)"
    return taken + (f"; refused: {why[:300]}" if refused else "")


def check_update(answer: Any) -> str:
    """`PUT /v1.0/card/instances`: `result` says whether the update was made."""
    check(answer)
    if answer.get("result") is not True:
        raise errors.failed(f"DingTalk did not update the card: {str(answer)[:200]}")
    return "updated"


def _refusal(code: str, message: str) -> Refused:
    text = f"DingTalk answered {code}: {message[:200]}"
    if code in TOKEN_CODES:
        return TokenRefused(NOTIFY_CHANNEL_ERROR, text)
    if code in CARD_EXISTS:
        return CardExists(NOTIFY_REJECTED, text)
    if code == CONTENT_UNSAFE:
        return ContentUnsafe(NOTIFY_REJECTED, text)
    if code.startswith(QPS_PREFIX):  # a one-second window ("sleep 1秒，然后继续执行")
        return errors.rate_limited(text, QPS_RETRY_SECONDS)
    if code == MONTHLY_QUOTA:
        logger.error("DingTalk: the organisation's monthly API calls are spent: %s", text)
        return errors.rejected(text)
    if code in CONFIG_CODES or code.startswith("param."):
        return errors.rejected(text)
    return errors.failed(text)


def _unused_build(*args: Any) -> HttpRequest:  # requests are built by `DingTalkApp`
    raise NotImplementedError


def _vendor(checked: Callable[[Any], str]) -> Vendor:
    return Vendor(
        "dingtalk_app",
        _unused_build,
        checked,
        str,
        redeliverable=True,
        codes_over_status=True,
        unreadable_error_seconds=BAN_SECONDS,
    )


def check_register(answer: Any) -> str:
    """The route as DingTalk now has it (`result`: `callbackUrl`, `apiSecret`), as JSON."""
    check(answer)
    result = answer.get("result")
    found = result if isinstance(result, dict) else {}
    url, secret = found.get("callbackUrl"), found.get("apiSecret")
    return json.dumps({"url": url if isinstance(url, str) else "", "secret": secret or ""})


DINGTALK_APP, DELIVERY, UPDATE = _vendor(check), _vendor(check_delivery), _vendor(check_update)
REGISTER = _vendor(check_register)


class DingTalkApp:
    """One app: `base` the API's URL (no trailing slash), `app_key`, `secret`; calls go
    through `session` with `timeout_seconds` each; `clock` in seconds."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: str,
        app_key: str,
        secret: str,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app_key = app_key
        self._session = session
        self._base = base.rstrip("/")
        self._secret = secret
        self._timeout = timeout_seconds
        self._token = AccessToken(self._fetch_token, clock)

    async def deliver(self, card: dict[str, Any]) -> str:
        """`createAndDeliver` (`check_delivery`); a card delivered by an earlier attempt is
        delivered."""
        try:
            return await self._call("POST", "/v1.0/card/instances/createAndDeliver", card, DELIVERY)
        except CardExists as exc:
            return f"delivered before ({exc})"

    async def update(self, update: dict[str, Any]) -> str:
        """`PUT /v1.0/card/instances`: the card's data (and one person's) merged by key."""
        return await self._call("PUT", "/v1.0/card/instances", update, UPDATE)

    async def register(
        self, route_key: str, url: str, api_secret: str, force: bool
    ) -> tuple[str, str]:
        """The HTTP callback route the cards name (`callback_route_key`) pointed at `url`
        with `api_secret`; without `force`, a route already registered is left as it is
        (every card naming the key follows a change: another deployment's too). The route
        as DingTalk has it now: (its URL, its apiSecret)."""
        body = {
            "callbackRouteKey": route_key,
            "callbackUrl": url,
            "apiSecret": api_secret,
            "forceUpdate": force,
        }
        registered = await self._call("POST", "/v1.0/card/callbacks/register", body, REGISTER)
        route = json.loads(registered)
        return str(route["url"]), str(route["secret"])

    async def _call(self, method: str, path: str, payload: dict[str, Any], vendor: Vendor) -> str:
        body = json_body(payload)

        async def call(token: str) -> str:
            headers = {"x-acs-dingtalk-access-token": token}
            request = HttpRequest(self._base + path, body, headers, method)
            return await post(self._session, vendor, request, self._timeout)

        return await self._token.using(call)

    async def _fetch_token(self) -> tuple[str, float]:
        answer = await fetch_json(
            self._session,
            "DingTalk accessToken",
            "POST",
            f"{self._base}/v1.0/oauth2/accessToken",
            self._timeout,
            check,
            json={"appKey": self.app_key, "appSecret": self._secret},
        )
        token = answer.get("accessToken") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise errors.failed(f"DingTalk answered no accessToken: {str(answer)[:120]}")
        return token, lifetime(answer.get("expireIn"))
