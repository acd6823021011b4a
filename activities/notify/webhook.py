"""Generic JSON webhook, signed.

POST the request as JSON (`riskflow.contracts.notifications.NotificationRequest`'s fields, raw,
plus `title` and `text`, the message rendered as CommonMark with the untrusted parts
neutralised by `NEUTRAL`, for a receiver that shows `text` as it is) with headers:
- `X-Riskflow-Timestamp`: Unix time in seconds,
- `X-Riskflow-Signature`: `sha256=` + hex HMAC-SHA256 with the channel's secret over
  `"{timestamp}." + body` (the scheme of Stripe's and GitHub's webhook signatures: a receiver
  recomputes it over the raw body and refuses stale timestamps),
- `Idempotency-Key`: the step's key; a receiver that has seen it answers 2xx again without
  acting twice, so this channel may send again when an earlier attempt's outcome is unknown.
Any 2xx is success; 429 is retried after Retry-After, 5xx retried, other 4xx are not.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from activities.notify.http import HttpRequest, Vendor, json_body
from activities.notify.layout import markdown
from activities.notify.markup import Neutraliser
from activities.notify.texts import Message
from riskflow.contracts.notifications import NotificationRequest

TIMESTAMP_HEADER = "X-Riskflow-Timestamp"
SIGNATURE_HEADER = "X-Riskflow-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# CommonMark (https://spec.commonmark.org/0.31.2/): emphasis, code, headings, quotes, links,
# images, raw HTML and entities, GFM tables and strikethrough.
NEUTRAL = Neutraliser("\\`*~#>[]<&!|")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def build(
    request: NotificationRequest, message: Message, url: str, secret: str | None, now: float
) -> HttpRequest:
    payload = request.model_dump(mode="json")
    payload["title"] = message.title(NEUTRAL)
    payload["text"] = markdown(message, NEUTRAL)
    body = json_body(payload)
    timestamp = str(int(now))
    headers = {TIMESTAMP_HEADER: timestamp, IDEMPOTENCY_HEADER: request.idempotency_key}
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    return HttpRequest(url=url, body=body, headers=headers)


def check(answer: Any) -> str:
    if isinstance(answer, dict):
        return str(answer.get("id") or answer.get("status") or "ok")[:200]
    return "ok"


WEBHOOK = Vendor("webhook", build, check, NEUTRAL, redeliverable=True)
