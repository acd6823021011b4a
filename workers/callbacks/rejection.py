"""Why a chat app's callback was refused: one exception for every vendor, with a reason the
listener counts and answers in the vendor's error shape."""

from __future__ import annotations

from typing import Literal

Reason = Literal[
    "bad_signature",  # the signature does not match the body, timestamp and secret
    "bad_ciphertext",  # not base64, or not whole cipher blocks
    "bad_padding",  # decrypted, but the padding is not PKCS#7: another key, or tampering
    "bad_length",  # WeCom: the length inside does not fit the message
    "wrong_receiver",  # WeCom: sealed for another corp
    "bad_token",  # Feishu: the verification token inside is not this app's
    "malformed",  # not the JSON or XML shape the vendor sends
    "stale",  # signed outside the replay window
    "replayed",  # the same signed request again
]


class CallbackRejected(Exception):
    """A callback that is not the vendor's for this app: `reason` says which check failed."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason


def within(sent: float, now: float, window: float) -> None:
    """`CallbackRejected("stale")` when a request signed at `sent` (epoch seconds) is more
    than `window` seconds from `now`: outside the replay window."""
    if abs(now - sent) > window:
        raise CallbackRejected("stale", f"signed {now - sent:.0f}s from now")


def signed_at(timestamp: str, now: float, window: float) -> int:
    """A timestamp parameter in whole epoch seconds, within the replay window; never read
    as a float ("nan" would pass any window)."""
    try:
        sent = int(timestamp)
    except ValueError:
        raise CallbackRejected("malformed", f"timestamp {timestamp[:20]!r}") from None
    within(sent, now, window)
    return sent
