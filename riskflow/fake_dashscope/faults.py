"""Injectable faults: a scripted sequence first, then random ones at configured rates."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

Outcome = Literal["ok", "429", "500", "503", "hang", "malformed", "invalid_key", "content"]


class FaultConfig(BaseModel):
    rate_429: float = Field(default=0.0, ge=0, le=1)
    rate_5xx: float = Field(default=0.0, ge=0, le=1)
    rate_hang: float = Field(default=0.0, ge=0, le=1)
    rate_malformed: float = Field(default=0.0, ge=0, le=1)
    retry_after_seconds: float = Field(default=1.0, ge=0)
    hang_seconds: float = Field(default=120.0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    enforce_limits: bool = True
    seed: int = 0
    script: list[Outcome] = Field(default_factory=list)


@dataclass
class FaultPlan:
    config: FaultConfig = field(default_factory=FaultConfig)
    script: deque[Outcome] = field(default_factory=deque)
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def of(cls, config: FaultConfig) -> FaultPlan:
        return cls(config, deque(config.script), random.Random(config.seed))

    def next(self) -> Outcome:
        if self.script:
            return self.script.popleft()
        cfg = self.config
        roll = self.rng.random()
        rates: list[tuple[Outcome, float]] = [
            ("429", cfg.rate_429),
            ("500", cfg.rate_5xx),
            ("hang", cfg.rate_hang),
            ("malformed", cfg.rate_malformed),
        ]
        for outcome, rate in rates:
            if roll < rate:
                return outcome
            roll -= rate
        return "ok"
