"""Risk levels, lowest to highest (`RiskLevel.rank` orders them)."""

from __future__ import annotations

from enum import StrEnum


class RiskLevel(StrEnum):
    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {level: i for i, level in enumerate(RiskLevel)}
