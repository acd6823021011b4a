"""What the provider sees: request arrivals and prompt tokens per key and per quota group, and
limit violations (requests per second and minute, tokens per minute)."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Broken = Literal["", "rate", "tokens"]


@dataclass
class Window:
    """Sliding-window accounting of arrivals against a QPS and an RPM limit."""

    qps: int
    rpm: int
    tpm: int | None = None
    arrivals: deque[float] = field(default_factory=deque)
    token_log: deque[tuple[float, int]] = field(default_factory=deque)
    requests: int = 0
    violations: int = 0
    token_violations: int = 0
    tokens: int = 0
    first: float | None = None
    last: float | None = None

    def record_tokens(self, now: float, tokens: int) -> bool:
        """Count one request's prompt tokens; True if the last 60 s hold more than `tpm`."""
        while self.token_log and self.token_log[0][0] <= now - 60.0:
            self.token_log.popleft()
        self.token_log.append((now, tokens))
        self.tokens += tokens
        broken = self.tpm is not None and sum(n for _, n in self.token_log) > self.tpm
        if broken:
            self.token_violations += 1
        return broken

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
            "tpm_limit": self.tpm,
            "requests": self.requests,
            "violations": self.violations,
            "token_violations": self.token_violations,
            "tokens": self.tokens,
            "first": self.first,
            "last": self.last,
        }


@dataclass
class LimitBook:
    keys: dict[str, Window]
    groups: dict[str, Window]
    key_group: dict[str, str]

    def record(self, key_id: str, tokens: int = 0) -> Broken:
        """Count one request of `tokens` prompt tokens: "rate" if it breaks a request limit,
        "tokens" a tokens-per-minute limit, "" if neither."""
        now = time.monotonic()
        windows = [self.keys[key_id]]
        group = self.key_group.get(key_id)
        if group is not None and group in self.groups:
            windows.append(self.groups[group])
        rate = [w.record(now) for w in windows]
        token = [w.record_tokens(now, tokens) for w in windows]
        return "rate" if any(rate) else "tokens" if any(token) else ""

    def stats(self) -> dict[str, object]:
        return {
            "keys": {k: w.stats() for k, w in self.keys.items()},
            "groups": {g: w.stats() for g, w in self.groups.items()},
            "violations": sum(w.violations for w in self.keys.values())
            + sum(w.violations for w in self.groups.values()),
            "token_violations": sum(w.token_violations for w in self.keys.values())
            + sum(w.token_violations for w in self.groups.values()),
            "now": time.monotonic(),
        }


class Limit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    qps: int = Field(gt=0)
    rpm: int = Field(gt=0)
    tpm: int | None = Field(default=None, gt=0)


class LimitsConfig(BaseModel):
    """`POST /admin/limits`: the limits the server enforces from now on (until reset), for
    tests whose keys differ from the configured ones: per key, per quota group, and which
    group each key belongs to."""

    model_config = ConfigDict(extra="forbid")

    keys: dict[str, Limit] = Field(default_factory=dict)
    groups: dict[str, Limit] = Field(default_factory=dict)
    key_groups: dict[str, str] = Field(default_factory=dict)

    def book(self, current: LimitBook) -> LimitBook:
        """A fresh book: these limits, and the current ones for keys not named."""
        keys = {k: Window(w.qps, w.rpm, w.tpm) for k, w in current.keys.items()}
        keys.update({k: Window(v.qps, v.rpm, v.tpm) for k, v in self.keys.items()})
        groups = {g: Window(v.qps, v.rpm, v.tpm) for g, v in self.groups.items()}
        return LimitBook(keys=keys, groups=groups, key_group=dict(self.key_groups))
