"""One HTTP POST to a channel, its outcome sorted by the phase the attempt reached.

- Not connected (refused, DNS, TLS handshake, a connect timeout, a wait for a free connection
  of the session's pool): nothing was sent -> `Refused` (retried, the claim released).
  `timeouts` makes the connect limit end before the total one, so a timeout while connecting is
  always aiohttp's `ConnectionTimeoutError`, never the bare `TimeoutError` of the total limit.
- Connected, then no complete answer (a read timeout, the total limit, a connection lost): the
  vendor may have the message -> `Uncertain`.
- An answer: the vendor's verdict (`Vendor.check`, `errors.http_status`).

Every request goes on a fresh connection (`fresh_connection_session`: a connector with
`force_close`, which also sends `Connection: close`): a pooled keep-alive connection the server
has already closed fails only once the request is written, exactly as a real disconnect after
sending fails, and a POST cannot be told apart or retried safely (aio-libs/aiohttp#6138, #7297;
a server that answers `keep-alive` to `Connection: close` still gets its connection pooled
without `force_close`). On a fresh connection a disconnect after connecting is a real
uncertainty. Robots are sent a few times a minute at most, so the extra handshake costs
nothing that matters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from activities.notify.errors import (
    Refused,
    Uncertain,
    failed,
    http_status,
    rate_limited,
    rejected,
    seconds,
)
from activities.notify.texts import Message
from riskflow.contracts.notifications import NOTIFY_RATE_LIMITED, NotificationRequest

# Retry-After (RFC 9110); Feishu's gateway names its wait x-ogw-ratelimit-reset (seconds).
RETRY_AFTER_HEADERS = ("Retry-After", "x-ogw-ratelimit-reset")


@dataclass(frozen=True)
class HttpRequest:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"  # an app's update: PATCH (Feishu), PUT (DingTalk)


@dataclass(frozen=True)
class Vendor:
    """A vendor's format: `build(request, message, url, secret, now_seconds)` makes the POST;
    `check(answer)` returns the detail of a 2xx JSON answer or raises `Refused`; `neutral` is
    the module's `NEUTRAL`, what makes untrusted text inert in its markup (a digest measures
    its lines with it). A `redeliverable` vendor's receivers dedupe by idempotency key."""

    name: str
    build: Callable[[NotificationRequest, Message, str, str | None, float], HttpRequest]
    check: Callable[[Any], str]
    neutral: Callable[[str], str]
    redeliverable: bool = False
    # The vendor's code decides whatever the HTTP status (Feishu's and DingTalk's open
    # platforms answer every error with 400, retryable ones included); a 429 stays a rate
    # limit with its Retry-After.
    codes_over_status: bool = False
    # An error status whose body is not the vendor's JSON is a rate limit of this many
    # seconds (DingTalk's IP ban answers an HTML page); None: the status decides.
    unreadable_error_seconds: float | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None
    text: str | None  # None: the status line came, the body was lost


def fresh_connection_session(trust_env: bool = False) -> aiohttp.ClientSession:
    """The session `NotifyActivities` needs: no connection is ever reused."""
    return aiohttp.ClientSession(
        trust_env=trust_env, connector=aiohttp.TCPConnector(force_close=True)
    )


def reuses_connections(client: aiohttp.ClientSession) -> bool:
    connector = client.connector
    return connector is not None and not connector.force_close


def json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def timeouts(total_seconds: float) -> aiohttp.ClientTimeout:
    """The attempt at most `total_seconds`, of which connecting (a pool wait included) at most
    half; deadlines not rounded up (aiohttp rounds those above `ceil_threshold`)."""
    connect = total_seconds / 2
    return aiohttp.ClientTimeout(
        total=total_seconds,
        connect=connect,
        sock_connect=connect,
        ceil_threshold=total_seconds + 1,
    )


def _retry_after(headers: Mapping[str, str]) -> str | None:
    return next((headers[h] for h in RETRY_AFTER_HEADERS if h in headers), None)


async def _exchange(
    client: aiohttp.ClientSession, request: HttpRequest, timeout_seconds: float
) -> Answer:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Connection": "close",
        **request.headers,
    }
    async with client.request(
        request.method,
        request.url,
        data=request.body,
        headers=headers,
        timeout=timeouts(timeout_seconds),
    ) as response:
        try:
            text: str | None = await response.text(errors="replace")
        except (TimeoutError, aiohttp.ClientError):
            text = None
        return Answer(response.status, _retry_after(response.headers), text)


async def post(
    client: aiohttp.ClientSession, vendor: Vendor, request: HttpRequest, timeout_seconds: float
) -> str:
    """Send `request` (a POST unless its `method` says otherwise); the vendor's detail of a
    success, else `Refused` or `Uncertain`."""
    # No str(exc) below: aiohttp's messages quote the URL, which holds the robot's token.
    try:
        answer = await _exchange(client, request, timeout_seconds)
    except aiohttp.InvalidURL as exc:
        raise rejected(f"{vendor.name}: invalid URL ({type(exc).__name__})") from None
    except aiohttp.ClientConnectorError as exc:  # never connected: not sent
        raise failed(f"{vendor.name}: cannot connect: {exc.os_error}") from None
    except aiohttp.ConnectionTimeoutError:  # connect or pool wait timed out: not sent
        raise failed(f"{vendor.name}: no connection within {timeout_seconds / 2:g}s") from None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise Uncertain(f"{vendor.name}: {type(exc).__name__} after connecting") from None
    return verdict(vendor, answer)


def verdict(vendor: Vendor, answer: Answer) -> str:
    """The vendor's detail of a success, or the `Refused`/`Uncertain` an answer means."""
    parsed = _json(answer.text)
    if not 200 <= answer.status < 300:
        coded = isinstance(parsed, dict) and "code" in parsed
        if vendor.codes_over_status and answer.status != 429 and coded:
            vendor.check(parsed)  # raises the code's verdict
        if vendor.unreadable_error_seconds is not None and not isinstance(parsed, dict):
            text = f"{vendor.name} answered HTTP {answer.status}: {(answer.text or '')[:120]}"
            raise rate_limited(text, vendor.unreadable_error_seconds)
        _raise_vendor_rate_limit(vendor, parsed, answer.retry_after)
        raise http_status(vendor.name, answer.status, answer.text or "", answer.retry_after)
    if answer.text is None:
        raise Uncertain(f"{vendor.name}: HTTP {answer.status}, then the answer was lost")
    if parsed is None and answer.text.strip():
        raise failed(
            f"{vendor.name} answered HTTP {answer.status} with non-JSON: {answer.text[:200]}"
        )
    return vendor.check(parsed if parsed is not None else {})


def _raise_vendor_rate_limit(vendor: Vendor, parsed: Any, retry_after: str | None) -> None:
    """An error status whose body carries the vendor's own rate-limit code (Feishu answers
    HTTP 400 or 429 with code 99991400) is a rate limit, not a refusal; a body the vendor's
    check reads as a verdict of its own (a `Refused` subclass: `TokenRefused` for Feishu's
    HTTP 400 with 99991663, a DingTalk card that already exists) is that verdict."""
    if not isinstance(parsed, dict):
        return
    try:
        vendor.check(parsed)
    except Refused as exc:
        if type(exc) is not Refused:
            raise
        if exc.kind == NOTIFY_RATE_LIMITED:
            raise rate_limited(str(exc), seconds(retry_after) or exc.retry_after_seconds) from None


def _json(text: str | None) -> Any:
    if not text or not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def code_of(answer: Any, field_name: str) -> tuple[int, str]:
    """The vendor's numeric result code and message; a missing code reads as an error."""
    if not isinstance(answer, dict):
        return -1, f"unexpected answer {str(answer)[:200]}"
    code = answer.get(field_name)
    message = str(answer.get("errmsg") or answer.get("msg") or "")
    if isinstance(code, bool) or not isinstance(code, int):
        return -1, f"answer without {field_name}: {json.dumps(answer)[:200]}"
    return code, message
