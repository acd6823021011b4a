"""Injectable faults: standing rules first, then a scripted sequence, then random faults at
configured rates. A rule or a script step can be an exact answer (status, body, headers), so a
test can replay what the real service sends, byte for byte."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

Outcome = Literal["ok", "429", "500", "503", "hang", "malformed", "invalid_key", "content"]


class ExactAnswer(BaseModel):
    """One response exactly as the provider sends it: `status`, a JSON `body` (or raw text),
    `headers`. `content` is a shorthand for a 200 chat answer whose assistant text it is;
    `drop` closes the connection without any answer (after the request was counted)."""

    status: int = Field(default=200, ge=100, le=599)
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    content: str | None = None
    drop: bool = False


class Rule(BaseModel):
    """Answer `answer` to every request that matches all the given fields: the key's id, the
    model, the endpoint (vision or text), a substring of the request's messages (JSON text).
    `times` bounds how often it answers (None: always)."""

    key_id: str | None = None
    model: str | None = None
    vision: bool | None = None
    contains: str | None = None
    times: int | None = Field(default=None, ge=1)
    answer: ExactAnswer

    def matches(self, key_id: str, model: str, vision: bool, messages_json: str) -> bool:
        return (
            (self.key_id is None or self.key_id == key_id)
            and (self.model is None or self.model == model)
            and (self.vision is None or self.vision == vision)
            and (self.contains is None or self.contains in messages_json)
        )


class MixEntry(BaseModel):
    """An exact answer drawn at random for a share `weight` (0-1) of the requests."""

    weight: float = Field(ge=0, le=1)
    answer: ExactAnswer


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
    script: list[Outcome | ExactAnswer] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    mix: list[MixEntry] = Field(
        default_factory=list, description="exact answers drawn after the rates (seeded)"
    )


@dataclass
class FaultPlan:
    config: FaultConfig = field(default_factory=FaultConfig)
    script: deque[Outcome | ExactAnswer] = field(default_factory=deque)
    rng: random.Random = field(default_factory=random.Random)
    rule_uses: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, config: FaultConfig) -> FaultPlan:
        uses = [0] * len(config.rules)
        return cls(config, deque(config.script), random.Random(config.seed), uses)

    def rule_for(
        self, key_id: str, model: str, vision: bool, messages_json: str
    ) -> ExactAnswer | None:
        """The answer of the first standing rule this request matches, if any."""
        for i, rule in enumerate(self.config.rules):
            if rule.times is not None and self.rule_uses[i] >= rule.times:
                continue
            if rule.matches(key_id, model, vision, messages_json):
                self.rule_uses[i] += 1
                return rule.answer
        return None

    def next(self) -> Outcome | ExactAnswer:
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
        for entry in cfg.mix:
            if roll < entry.weight:
                return entry.answer
            roll -= entry.weight
        return "ok"
