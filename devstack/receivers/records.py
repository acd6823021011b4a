"""What the receiver got: accepted notifications, refused requests, and scripted answers."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.receivers.limits import RateLimit

MAX_RECORDS = 1000


@dataclass
class Fault:
    """Answer the next `times` valid requests of `channel` with `status` and `body`."""

    channel: str
    times: int
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    # Record the notification as accepted, then answer only after this many seconds: the
    # sender's timeout fires after the vendor got the message (an answer lost on the way).
    delay_seconds: float = 0.0


class Records:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # the receiver's time: `received_at` and the rate limits
        # Called by `reset` too: what else the receiver keeps (the WeCom app simulator's
        # tokens and cards, `devstack.receivers.wecom_app`).
        self.on_reset: list[Callable[[], None]] = []
        self.reset()

    def reset(self) -> None:
        self.notifications: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.rejections: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.faults: list[Fault] = []
        self.limits: list[RateLimit] = []
        self.seen_keys: set[str] = set()
        self.duplicates = 0
        for clear in self.on_reset:
            clear()

    def accept(self, channel: str, vendor: str, payload: dict[str, Any], **extra: Any) -> None:
        record = {"channel": channel, "vendor": vendor, "received_at": self.clock()}
        self.notifications.append({**record, **extra, "payload": payload})

    def refuse(self, channel: str, vendor: str, reason: str) -> None:
        record = {"channel": channel, "vendor": vendor, "received_at": self.clock()}
        self.rejections.append({**record, "reason": reason})

    def fault_for(self, channel: str) -> Fault | None:
        for fault in self.faults:
            if fault.channel in (channel, "*") and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def over_limit(self, channel: str) -> bool:
        """Whether a message of `channel` arriving now breaks one of its rate limits (each
        limit that admits it counts it)."""
        now = self.clock()
        return not all([limit.admit(now) for limit in self.limits if limit.channel == channel])
