"""What the provider sees: request arrivals per key and per quota group, and limit violations."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Window:
    """Sliding-window accounting of arrivals against a QPS and an RPM limit."""

    qps: int
    rpm: int
    arrivals: deque[float] = field(default_factory=deque)
    requests: int = 0
    violations: int = 0
    first: float | None = None
    last: float | None = None

    def record(self, now: float) -> bool:
        """Count one arrival; True if it breaks a limit (more than qps in 1 s or rpm in 60 s)."""
        while self.arrivals and self.arrivals[0] <= now - 60.0:
            self.arrivals.popleft()
        self.arrivals.append(now)
        self.requests += 1
        self.first = now if self.first is None else self.first
        self.last = now
        in_minute = len(self.arrivals)
        in_second = sum(
            1 for _ in itertools.takewhile(lambda t: t > now - 1.0, reversed(self.arrivals))
        )
        broken = in_second > self.qps or in_minute > self.rpm
        if broken:
            self.violations += 1
        return broken

    def stats(self) -> dict[str, object]:
        return {
            "qps_limit": self.qps,
            "rpm_limit": self.rpm,
            "requests": self.requests,
            "violations": self.violations,
            "first": self.first,
            "last": self.last,
        }


@dataclass
class LimitBook:
    keys: dict[str, Window]
    groups: dict[str, Window]
    key_group: dict[str, str]

    def record(self, key_id: str) -> bool:
        now = time.monotonic()
        broken = self.keys[key_id].record(now)
        group = self.key_group.get(key_id)
        if group is not None and self.groups[group].record(now):
            broken = True
        return broken

    def stats(self) -> dict[str, object]:
        return {
            "keys": {k: w.stats() for k, w in self.keys.items()},
            "groups": {g: w.stats() for g, w in self.groups.items()},
            "violations": sum(w.violations for w in self.keys.values())
            + sum(w.violations for w in self.groups.values()),
            "now": time.monotonic(),
        }
