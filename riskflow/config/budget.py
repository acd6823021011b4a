"""Site budgets: tokens and cost per day and per month, counted in the site's time zone.

`config/sites.yaml`, a site's `capacity`:

```yaml
sites:
  - id: plant-a
    timezone: Asia/Shanghai          # a day and a month start at local midnight
    capacity:
      budget:
        daily_tokens: 2000000        # input + output tokens the provider reported
        monthly_tokens: 40000000
        daily_cost: 60.0             # in `prices.currency`, priced with `prices.models`
        monthly_cost: 1200.0
        warn_ratio: 0.8              # a warning once per period and unit (log, metric, alert)
        on_exhausted: fallback       # or stop
```

Every limit is optional, but a budget names at least one. Every answer the provider charged for
is counted, a malformed one too, against the site of the camera it assessed
(`riskflow.config.sites.site_of`). When a limit is reached
the site's next assessments either **fall back**: they use only the last entry of the site's
failover chain (`riskflow.config.capacity`; put the cheap one last, e.g. a text-only small
model), or a text-only call with the task's text model when the site has no chain, marked
degraded; or **stop**: no call is made and the assessment is recorded as failed with the
reason. Replays (`riskflow replay`) have their own budget and are not counted here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

Period = Literal["day", "month"]
Unit = Literal["tokens", "cost"]
PERIODS: tuple[Period, ...] = ("day", "month")
COST_SCALE = 1_000_000  # costs are stored in millionths of the currency unit (integers)


class SiteBudget(BaseModel):
    """A site's `capacity.budget`: limits per day and month in tokens and in cost (unset: no
    limit), the warning ratio, and what an exhausted budget does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_tokens: StrictInt | None = Field(default=None, gt=0)
    monthly_tokens: StrictInt | None = Field(default=None, gt=0)
    daily_cost: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="in `prices.currency`"
    )
    monthly_cost: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="in `prices.currency`"
    )
    warn_ratio: float = Field(default=0.8, gt=0, lt=1)
    on_exhausted: Literal["fallback", "stop"] = "fallback"

    @model_validator(mode="after")
    def _some_limit(self) -> SiteBudget:
        if all(self.limit(p, u) is None for p in PERIODS for u in ("tokens", "cost")):
            raise ValueError(
                "a budget needs at least one of daily_tokens, monthly_tokens, daily_cost, "
                "monthly_cost (remove `budget:` for none)"
            )
        return self

    def limit(self, period: Period, unit: Unit) -> float | None:
        if period == "day":
            return self.daily_tokens if unit == "tokens" else self.daily_cost
        return self.monthly_tokens if unit == "tokens" else self.monthly_cost


class Spend(BaseModel):
    """What a site spent in one period: tokens, and cost in the currency unit."""

    tokens: int = 0
    cost: float = 0.0

    def of(self, unit: Unit) -> float:
        return self.tokens if unit == "tokens" else self.cost


class BudgetVerdict(BaseModel):
    """Where a site stands: the highest used share of any limit (0 without limits), and the
    limit reached ('' when none is: e.g. "daily tokens 2000110 of 2000000")."""

    used_ratio: float = 0.0
    exhausted: str = ""


def period_ids(now: datetime, zone: ZoneInfo) -> dict[Period, str]:
    """The day and month `now` (aware) falls in, in `zone`: {"day": "2026-11-30",
    "month": "2026-11"}."""
    local = now.astimezone(zone)
    return {"day": local.strftime("%Y-%m-%d"), "month": local.strftime("%Y-%m")}


def _label(period: Period, unit: Unit) -> str:
    return f"{'daily' if period == 'day' else 'monthly'} {unit}"


def verdict(budget: SiteBudget, spend: dict[Period, Spend]) -> BudgetVerdict:
    """The site's standing with `spend` (per period; a missing period spent nothing)."""
    highest, exhausted = 0.0, ""
    for period in PERIODS:
        for unit in ("tokens", "cost"):
            limit = budget.limit(period, unit)
            if limit is None:
                continue
            used = spend.get(period, Spend()).of(unit)
            ratio = used / limit
            highest = max(highest, ratio)
            if ratio >= 1 and not exhausted:
                exhausted = f"{_label(period, unit)} {used:g} of {limit:g}"
    return BudgetVerdict(used_ratio=highest, exhausted=exhausted)


def levels(
    budget: SiteBudget, spend: dict[Period, Spend]
) -> list[tuple[Period, Unit, Literal["warning", "exhausted"]]]:
    """Each limit at or above the warning share of `spend`: its period, unit and level
    (`exhausted` at 100%, else `warning`). The ledger tells operators once per period and
    level (a marker in the period's hash), however the spend got there: one charge, many, a
    restart or a lowered limit."""
    found: list[tuple[Period, Unit, Literal["warning", "exhausted"]]] = []
    for period in PERIODS:
        for unit in ("tokens", "cost"):
            limit = budget.limit(period, unit)
            if limit is None:
                continue
            ratio = spend.get(period, Spend()).of(unit) / limit
            if ratio >= 1:
                found.append((period, unit, "exhausted"))
            elif ratio >= budget.warn_ratio:
                found.append((period, unit, "warning"))
    return found
