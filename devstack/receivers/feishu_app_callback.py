"""What Feishu sends to an app's callback URL, built and sent as Feishu does, and how Feishu's
client judges the answer. Sources (riba2534/feishu-open-docs@3ab55dfc): `cardkit-v1/
card-callback-communication.md` (the `card.action.trigger` body, the answer, the client error
codes), `event-subscription-guide/callback-subscription/receive-and-handle-callbacks.md`
(encryption, signature, URL check); crypto in `workers.callbacks.feishu_crypto`.

- A press: `{"schema": "2.0", "header": {"event_id", "token" (Verification Token),
  "create_time" (µs, a string), "event_type": "card.action.trigger", "tenant_key", "app_id"},
  "event": {"operator": {"tenant_key", "user_id"?, "open_id", "union_id"}, "token": "c-…",
  "action": {"value", "tag", "option"?}, "host": "im_message", "context": {"open_message_id",
  "open_chat_id"}}}`, sealed as `{"encrypt"}` and POSTed as JSON with `X-Lark-Request-Timestamp`
  (s), `X-Lark-Request-Nonce`, `X-Lark-Signature`. Feishu does not retry card callbacks; a
  test may ask for N deliveries of the same callback (same event_id), each sealed afresh.
- The answer, within 3 s, HTTP 200 and a JSON object: `{}`, `{"toast": {...}}`, `{"card":
  {"type": "raw", "data": card 2.0}}`. Else the client shows: 200341 no answer in time, 200342
  no connection, 200671 not HTTP 200 (3xx included: redirects are not followed), 200672 not a
  JSON object (or a toast not an object), 200673 a bad card, 200830 a 1.0 card for a 2.0 one.
- The URL check: `{"challenge", "token", "type": "url_verification"}` sealed and POSTed the same
  way (signed too: whether Feishu signs it is not documented); passed when the answer, within
  1 s, is the JSON `{"challenge": the same}`.

`tamper` makes a delivery the product must refuse: `signature` (X-Lark-Signature altered),
`stale_timestamp` (signed correctly, an hour old), `token` (another Verification Token inside),
`app_id` (another app's id in the header).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from devstack.receivers.feishu_app_card import Checked, Invalid, check_card
from workers.callbacks.feishu_crypto import FeishuCrypto

Tamper = Literal["signature", "stale_timestamp", "token", "app_id"]
TAMPERS: tuple[str, ...] = ("signature", "stale_timestamp", "token", "app_id")
STALE_SECONDS = 3600


@dataclass(frozen=True)
class Press:
    """One `card.action.trigger`: who pressed what on which message."""

    app_id: str
    tenant_key: str
    operator: dict[str, str]
    message_id: str
    chat_id: str
    tag: str
    value: dict[str, Any]
    option: str | None
    event_id: str
    card_token: str
    create_time: str  # µs

    def callback(self, verification_token: str, tamper: Tamper | None) -> dict[str, Any]:
        header = {
            "event_id": self.event_id,
            "token": verification_token + "-other" if tamper == "token" else verification_token,
            "create_time": self.create_time,
            "event_type": "card.action.trigger",
            "tenant_key": self.tenant_key,
            "app_id": "cli_other_app" if tamper == "app_id" else self.app_id,
        }
        action: dict[str, Any] = {"value": self.value, "tag": self.tag}
        if self.option is not None:
            action["option"] = self.option
        event = {"operator": self.operator, "token": self.card_token, "action": action}
        event |= {"host": "im_message"}
        event["context"] = {"open_message_id": self.message_id, "open_chat_id": self.chat_id}
        return {"schema": "2.0", "header": header, "event": event}


@dataclass(frozen=True)
class Sent:
    status: int | None  # None: no answer (timed out or no connection)
    body: str
    seconds: float
    timed_out: bool
    raw: bytes


def sealed(
    crypto: FeishuCrypto, callback: dict[str, Any], now: float, tamper: Tamper | None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers Feishu POSTs for `callback`, or corrupted as `tamper` says."""
    body = crypto.seal(callback)
    timestamp = str(int(now) - (STALE_SECONDS if tamper == "stale_timestamp" else 0))
    nonce = secrets.token_hex(4)
    signature = crypto.sign(timestamp, nonce, body)
    if tamper == "signature":
        signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    headers = {"Content-Type": "application/json; charset=utf-8"}
    headers |= {"X-Lark-Request-Timestamp": timestamp, "X-Lark-Request-Nonce": nonce}
    headers["X-Lark-Signature"] = signature
    return body, headers


async def post(url: str, body: bytes, headers: dict[str, str], deadline: float) -> Sent:
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=deadline)
    try:
        async with (
            aiohttp.ClientSession(trust_env=False, timeout=timeout) as session,
            session.post(url, data=body, headers=headers, allow_redirects=False) as response,
        ):
            raw = await response.read()
            text = raw.decode(errors="replace")
            return Sent(response.status, text, time.monotonic() - started, False, raw)
    except TimeoutError:
        return Sent(None, "", time.monotonic() - started, True, b"")
    except aiohttp.ClientError as exc:
        text = f"{type(exc).__name__}: {exc}"
        return Sent(None, text, time.monotonic() - started, False, b"")


@dataclass(frozen=True)
class Judged:
    """What Feishu's client makes of an answer: an error code, or a toast and a new card."""

    error_code: int | None
    error: str
    toast: dict[str, Any] | None = None
    card: Checked | None = None


def judge(sent: Sent) -> Judged:
    if sent.timed_out:
        return Judged(200341, "no answer within the deadline")
    if sent.status is None:
        return Judged(200342, sent.body)
    if sent.status != 200:
        return Judged(200671, f"HTTP {sent.status}")
    try:
        answer = json.loads(sent.raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return Judged(200672, "the answer is not JSON")
    toast = answer.get("toast") if isinstance(answer, dict) else None
    if not isinstance(answer, dict) or not isinstance(toast, dict | None):
        return Judged(200672, "the answer is not {toast?, card?}")
    card = answer.get("card")
    if card is None:
        return Judged(None, "", toast)
    return _card(card, toast)


def _card(card: Any, toast: dict[str, Any] | None) -> Judged:
    if not isinstance(card, dict) or card.get("type") != "raw":
        return Judged(200673, "card: {type: raw, data} (templates are not modelled)", toast)
    data = card.get("data")
    if not isinstance(data, dict):
        return Judged(200673, "card.data must be a card object", toast)
    if data.get("schema") != "2.0":
        return Judged(200830, "a JSON 2.0 card cannot become a 1.0 card", toast)
    try:
        return Judged(None, "", toast, check_card(data))
    except Invalid as exc:
        return Judged(200673, exc.message, toast)


async def deliver(
    press: Press,
    callback: tuple[str, str],
    url: str,
    clock: Callable[[], float],
    deliveries: int,
    tamper: Tamper | None,
    deadline: float,
) -> list[tuple[Sent, Judged]]:
    """POST the press `deliveries` times (the same callback), each sealed afresh."""
    token, encrypt_key = callback
    crypto = FeishuCrypto(encrypt_key, token)
    found: list[tuple[Sent, Judged]] = []
    for _ in range(deliveries):
        body, headers = sealed(crypto, press.callback(token, tamper), clock(), tamper)
        sent = await post(url, body, headers, deadline)
        found.append((sent, judge(sent)))
    return found


async def check_url(
    callback: tuple[str, str], url: str, now: float, deadline: float
) -> dict[str, Any]:
    """Feishu's check of a callback URL: ok when the answer echoes the challenge."""
    token, encrypt_key = callback
    challenge = secrets.token_hex(16)
    check = {"challenge": challenge, "token": token, "type": "url_verification"}
    body, headers = sealed(FeishuCrypto(encrypt_key, token), check, now, None)
    sent = await post(url, body, headers, deadline)
    try:
        answer = json.loads(sent.raw) if sent.status == 200 else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        answer = None
    ok = isinstance(answer, dict) and answer.get("challenge") == challenge
    return {"ok": ok, "status": sent.status, "body": sent.body} | {
        "seconds": sent.seconds,
        "timed_out": sent.timed_out,
    }
