"""Vendor rate limits as the receiver enforces them (dev tooling): a channel given a `RateLimit`
counts what it accepts in a sliding window, answers the next message over the limit with the
vendor's "too fast" answer, and then refuses everything for `block_seconds`, as DingTalk does
for 10 minutes after its 21st message in a minute. Its clock is the receiver's `Records.clock`,
so a test can script time for the receiver and the senders alike.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

TOO_FAST: dict[str, tuple[int, dict[str, Any]]] = {
    "dingtalk": (200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
    "wecom": (200, {"errcode": 45009, "errmsg": "api freq out of limit"}),
    "feishu": (
        200,
        {"code": 11232, "msg": "frequency limited psm[lark.oapi.app_platform_runtime]"},
    ),
    "webhook": (429, {"error": "too many requests"}),
}


@dataclass
class RateLimit:
    """At most `count` accepted messages of `channel` in any `window_seconds`; one more is
    refused and closes the channel for `block_seconds`. `refused` counts the refusals."""

    channel: str
    count: int
    window_seconds: float
    block_seconds: float = 0.0
    accepted: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0
    refused: int = 0

    def admit(self, now: float) -> bool:
        """Whether a message arriving at `now` is accepted (and counted)."""
        while self.accepted and self.accepted[0] <= now - self.window_seconds:
            self.accepted.popleft()
        if now < self.blocked_until or len(self.accepted) >= self.count:
            self.refused += 1
            self.blocked_until = max(self.blocked_until, now + self.block_seconds)
            return False
        self.accepted.append(now)
        return True

    def most_in_window(self, times: list[float]) -> int:
        """The most of `times` that fall in any one window (the vendor's own count)."""
        ordered = sorted(times)
        most, start = 0, 0
        for end, t in enumerate(ordered):
            while ordered[start] <= t - self.window_seconds:
                start += 1
            most = max(most, end - start + 1)
        return most
