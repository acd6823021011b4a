"""One HTTP POST to a channel, its transport errors sorted into `Refused` and `Uncertain`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from activities.notify.errors import Uncertain, failed, http_status, rejected
from activities.notify.texts import Message
from riskflow.contracts.notifications import NotificationRequest


@dataclass(frozen=True)
class HttpRequest:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Vendor:
    """A vendor's format: `build(request, message, url, secret, now_seconds)` makes the POST;
    `check(answer)` returns the detail of a 2xx JSON answer or raises `Refused`. A
    `redeliverable` vendor's receivers dedupe by idempotency key."""

    name: str
    build: Callable[[NotificationRequest, Message, str, str | None, float], HttpRequest]
    check: Callable[[Any], str]
    redeliverable: bool = False


def json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def post(
    session: aiohttp.ClientSession, vendor: Vendor, request: HttpRequest, timeout_seconds: float
) -> str:
    """POST `request`; the vendor's detail of a success, else `Refused` or `Uncertain`."""
    headers = {"Content-Type": "application/json; charset=utf-8", **request.headers}
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    try:
        async with session.post(
            request.url, data=request.body, headers=headers, timeout=timeout
        ) as response:
            text = await response.text(errors="replace")
            status, retry_after = response.status, response.headers.get("Retry-After")
    except aiohttp.InvalidURL as exc:
        raise rejected(f"{vendor.name}: invalid URL ({type(exc).__name__})") from None
    except aiohttp.ClientConnectorError as exc:  # never connected: certainly not delivered
        raise failed(f"{vendor.name}: cannot connect: {exc.os_error}") from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        # No str(exc): some aiohttp errors quote the URL, which holds the robot's token.
        raise Uncertain(f"{vendor.name}: {type(exc).__name__} after sending") from None
    if not 200 <= status < 300:
        raise http_status(vendor.name, status, text, retry_after)
    try:
        answer = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        raise failed(f"{vendor.name} answered HTTP {status} with non-JSON: {text[:200]}") from None
    return vendor.check(answer)


def code_of(answer: Any, field_name: str) -> tuple[int, str]:
    """The vendor's numeric result code and message; a missing code reads as an error."""
    if not isinstance(answer, dict):
        return -1, f"unexpected answer {str(answer)[:200]}"
    code = answer.get(field_name)
    message = str(answer.get("errmsg") or answer.get("msg") or "")
    if isinstance(code, bool) or not isinstance(code, int):
        return -1, f"answer without {field_name}: {json.dumps(answer)[:200]}"
    return code, message


def fit_utf8(text: str, limit_bytes: int) -> str:
    """`text` cut to at most `limit_bytes` of UTF-8, never inside a character."""
    data = text.encode()
    if len(data) <= limit_bytes:
        return text
    return data[: limit_bytes - 3].decode(errors="ignore") + "..."
