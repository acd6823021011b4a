"""DingTalk's signature on interactive-card callbacks over HTTP (the route registered with
`POST /v1.0/card/callbacks/register`: `callbackRouteKey`, `callbackUrl`, `apiSecret`).

Source: open.dingtalk.com/document/development/event-callback-card (its server samples; read,
not copied). Each click's request carries `x-ddpaas-signature-timestamp` and
`x-ddpaas-signature` = base64 of HMAC-SHA256 keyed by the route's `apiSecret` over the
timestamp header's value as sent. Only the timestamp is signed, not the body, so the listener
must also bound the timestamp's age and take the card's `outTrackId` and `corpId` from the body
as claims to check against what riskflow sent. The timestamp's unit is not documented
(milliseconds in the samples); `timestamp_seconds` reads either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from workers.callbacks.rejection import CallbackRejected


def card_signature(api_secret: str, timestamp: str) -> str:
    """base64 HMAC-SHA256(key = api secret, message = the timestamp header's string)."""
    digest = hmac.new(api_secret.encode(), timestamp.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_card_callback(api_secret: str, timestamp: str, sent_signature: str) -> None:
    """CallbackRejected("bad_signature") unless `sent_signature` signs `timestamp`."""
    expected = card_signature(api_secret, timestamp)
    if not hmac.compare_digest(expected.encode(), sent_signature.strip().encode()):
        raise CallbackRejected("bad_signature")


def timestamp_seconds(timestamp: str) -> float:
    """The header's time as epoch seconds, whether it was sent in milliseconds (13 digits) or
    seconds (10); CallbackRejected("malformed") for anything else."""
    if not timestamp.isdigit() or len(timestamp) not in (10, 13):
        raise CallbackRejected("malformed", f"timestamp {timestamp[:20]!r}")
    value = int(timestamp)
    return value / 1000 if len(timestamp) == 13 else float(value)
