"""What a send attempt learned when it did not succeed, and the ApplicationError it becomes.

Two kinds, because they decide whether a retry may send again. The line between them is the
phase the attempt reached, not the exception's name (a timeout is either):
- `Refused`: the message was certainly not delivered: the vendor answered with an error, or the
  attempt ended before the request could reach the vendor (no connection: refused, DNS, TLS
  handshake, a connect timeout, a wait for a free pooled connection; SMTP: anything before the
  DATA command). The idempotency claim is released; Temporal retries when `retryable`, after
  `retry_after_seconds` when the vendor named it.
- `Uncertain`: the request may have reached the vendor (connected, then a timeout or a lost
  connection before the answer; SMTP: from the DATA command on). A retry does not send again
  unless the channel's receiver dedupes by key.
"""

from __future__ import annotations

import math
from datetime import timedelta

from temporalio.exceptions import ApplicationError

from riskflow.contracts.notifications import (
    NOTIFY_CHANNEL_ERROR,
    NOTIFY_RATE_LIMITED,
    NOTIFY_REJECTED,
)


class Refused(Exception):
    """Not delivered. `kind` is one of riskflow.contracts.notifications' NOTIFY_* error types."""

    def __init__(self, kind: str, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_seconds = retry_after_seconds

    @property
    def retryable(self) -> bool:
        return self.kind != NOTIFY_REJECTED


class TokenRefused(Refused):
    """An app's access token was refused (expired early, revoked, never valid): fetch a new
    one and make the call once more. Vendors answer it with an error status as well as with
    200 (`http.verdict` lets it through either way)."""


class RecipientRefused(Refused):
    """One recipient of an app's message cannot be reached (left, blocked the bot, outside
    the app's availability; a chat the bot is no longer in): the others are still sent to."""


class Uncertain(Exception):
    """The request may or may not have been delivered."""


def rate_limited(message: str, retry_after_seconds: float | None = None) -> Refused:
    return Refused(NOTIFY_RATE_LIMITED, message, retry_after_seconds)


def rejected(message: str) -> Refused:
    return Refused(NOTIFY_REJECTED, message)


def failed(message: str) -> Refused:
    return Refused(NOTIFY_CHANNEL_ERROR, message)


def vendor_code(
    vendor: str,
    code: int,
    message: str,
    rate_codes: frozenset[int],
    config_codes: frozenset[int],
    rate_delay_seconds: float = 60.0,
) -> Refused:
    """A vendor's error answer (a non-zero code): rate limits are retried after
    `rate_delay_seconds` (the vendor's window or block), codes that name bad configuration or
    format are not retried, any other code is."""
    text = f"{vendor} answered code {code}: {message[:200]}"
    if code in rate_codes:
        return rate_limited(text, rate_delay_seconds)
    if code in config_codes:
        return rejected(text)
    return failed(text)


def http_status(vendor: str, status: int, text: str, retry_after: str | None) -> Refused:
    """A non-2xx HTTP answer: 429 rate-limited (Retry-After seconds), 5xx and 408 retried,
    other 4xx (bad URL, token, format) not."""
    message = f"{vendor} answered HTTP {status}: {text[:200]}"
    if status == 429:
        return rate_limited(message, seconds(retry_after))
    if status >= 500 or status == 408:
        return failed(message)
    return rejected(message)


MAX_RETRY_AFTER_SECONDS = 3600.0  # a longer (or infinite) Retry-After closes a channel an hour


def seconds(value: str | None) -> float | None:
    """A Retry-After given in seconds, at most `MAX_RETRY_AFTER_SECONDS`; None when absent or
    not a finite number ("inf" and "nan" too: a receiver must not close a channel for ever)."""
    try:
        parsed = float(value) if value else None
    except ValueError:
        return None
    if parsed is None or not math.isfinite(parsed):
        return None
    return min(max(0.0, parsed), MAX_RETRY_AFTER_SECONDS)


def application_error(channel: str, exc: Refused) -> ApplicationError:
    """The error Temporal sees: `type` is the kind, `non_retryable` for rejections."""
    delay = exc.retry_after_seconds
    return ApplicationError(
        f"channel {channel!r}: {exc}",
        type=exc.kind,
        non_retryable=not exc.retryable,
        next_retry_delay=timedelta(seconds=delay) if delay else None,
    )
