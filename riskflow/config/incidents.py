"""How incidents behave: which situations open one, the escalation ladder, quiet hours,
auto-resolve and expiry. Global default `incidents:` in riskflow.yaml; a site may set its own
(`sites[].incidents`), which replaces the default as a whole for that site's cameras.

```yaml
incidents:
  min_rule_severity: 2          # significance rules below this open no incident
  escalation:                   # level 0 at once, then unacknowledged for N seconds ...
    - {after_seconds: 0, channels: [ops-group]}
    - {after_seconds: 300, channels: [shift-lead]}
    - {after_seconds: 900, channels: [site-manager]}
  repeat_seconds: 900           # then the last level again every 15 min (0: never)
  quiet_hours:                  # in the site's time zone; end before start crosses midnight
    - {days: [mon, tue, wed, thu, fri], start: "22:00", end: "06:00"}
  quiet_hours_hold_below: high  # held in quiet hours: severities below this
  reassess_every_seconds: 600   # reassess the newest frame this often while open (0: never)
```

`quiet_until` is pure (no clock of its own): the workflow passes `workflow.now()`.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from riskflow.levels import RiskLevel

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_JOINED_DAYS = 8  # quiet periods joined into one: a week and a day at most
MIN_REASSESS_SECONDS = 60  # each reassessment is an LLM call


class EscalationStep(BaseModel):
    """One level: notify `channels` (configured channel names) once the incident has been
    unacknowledged for `after_seconds` since it was first notified (level 0: 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after_seconds: float = Field(ge=0)
    channels: list[str] = Field(min_length=1)
    fallback_channels: list[str] = Field(
        default_factory=list, description="each gets the message a channel failed to deliver"
    )


class QuietPeriod(BaseModel):
    """`days` (the day the period starts), from `start` to `end` local time; an `end` at or
    before `start` runs past midnight into the next day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: time
    end: time


class IncidentConfig(BaseModel):
    """Incident behaviour for one site (or the default). Durations in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_rule_severity: int = Field(default=2, ge=0, le=10)
    notify_within_seconds: float = Field(
        default=3.0,
        ge=0,
        le=60,
        description="level 0 is told this soon after a significant rule below "
        "life_safety_severity, whether or not the LLM has answered (then: the detector's "
        "facts, assessment pending; the assessment follows as an update); a model that "
        "answers sooner is in the first message and may dismiss the incident silently",
    )
    life_safety_severity: int = Field(
        default=5,
        ge=0,
        le=10,
        description="rules at or above (a fall): told at once, before the model is asked "
        "(the assessment follows as an update), and so is an upgrade to one, quiet hours "
        "or not",
    )
    families: dict[str, str] = Field(
        default_factory=dict,
        description="significance rule -> situation family; unlisted rules are 'hazard', so "
        "a crowd that turns into a fall is one incident that escalates",
    )
    escalation: list[EscalationStep] = Field(
        default_factory=lambda: [EscalationStep(after_seconds=0, channels=["ops-group"])],
        min_length=1,
    )
    repeat_seconds: float = Field(default=0, ge=0, description="repeat the last level; 0: no")
    max_repeats: int = Field(default=12, ge=0)
    quiet_hours: list[QuietPeriod] = Field(default_factory=list)
    quiet_hours_hold_below: RiskLevel = Field(
        default=RiskLevel.HIGH, description="held in quiet hours; at or above breaks through"
    )
    dismiss_at_or_below: RiskLevel = Field(
        default=RiskLevel.LOW,
        description="a first assessment at or below: dismissed (silent when nobody was told "
        "yet; told when a fall was), unless acknowledged meanwhile or a more severe rule came "
        "in since the assessed frame",
    )
    count_step: int = Field(default=3, ge=1, description="reassess when the count grows by it")
    reassess_every_seconds: float = Field(
        default=0,
        ge=0,
        description="while the incident is open and a new frame arrived since the last "
        "assessment, reassess the newest frame this long after it; 0: never, else >= 60",
    )
    auto_resolve_after_seconds: float = Field(default=300, gt=0)
    resolve_max_score: int = Field(default=30, ge=0, le=100)
    resolve_max_level: RiskLevel = RiskLevel.LOW
    dismissed_cooldown_seconds: float = Field(
        default=300, ge=0, description="frames this soon after a dismissal open nothing"
    )
    expire_after_seconds: float = Field(default=24 * 3600, gt=0)
    max_frames: int = Field(default=20, ge=1, le=500, description="frame references kept")
    max_timeline: int = Field(default=200, ge=10, le=5000)
    max_history_events: int = Field(
        default=10_000, ge=100, description="continue-as-new beyond (or when suggested)"
    )

    @field_validator("escalation")
    @classmethod
    def _ordered(cls, steps: list[EscalationStep]) -> list[EscalationStep]:
        times = [s.after_seconds for s in steps]
        if times[0] != 0 or times != sorted(times):
            raise ValueError("escalation steps start at after_seconds 0 and go up")
        return steps

    @field_validator("reassess_every_seconds")
    @classmethod
    def _not_too_often(cls, seconds: float) -> float:
        if 0 < seconds < MIN_REASSESS_SECONDS:
            raise ValueError(
                f"reassess_every_seconds is 0 (off) or at least {MIN_REASSESS_SECONDS}"
            )
        return seconds

    def family(self, rule: str) -> str:
        return self.families.get(rule, "hazard")


def _period_spans(
    period: QuietPeriod, day: date, zone: ZoneInfo
) -> tuple[datetime, datetime] | None:
    """The period's span starting on local `day`, if it starts that weekday, as instants
    (UTC): from the first moment the wall clock shows `start` to the last moment it shows
    `end` (see `wall_instant`)."""
    if WEEKDAYS[day.weekday()] not in period.days:
        return None
    start_at, end_at = period.start.replace(tzinfo=None), period.end.replace(tzinfo=None)
    end_day = day + timedelta(days=1) if end_at <= start_at else day
    start = wall_instant(day, start_at, zone, later=False)
    return start, wall_instant(end_day, end_at, zone, later=True)


def wall_instant(day: date, at: time, zone: ZoneInfo, *, later: bool) -> datetime:
    """The instant (UTC) the wall clock of `zone` shows `at` on `day`. A time shown twice
    (the repeated hour when clocks fall back) gives its first instant, or its second when
    `later`; a time never shown (the hour skipped when clocks spring forward) gives the
    moment the clock jumps past it. Compare instants, never wall times: two datetimes of one
    ZoneInfo compare by wall time and ignore `fold`, and adding a timedelta resets it."""
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first <= second:  # shown once (equal) or twice (fold 0 is the earlier offset)
        return second if later else first
    return _jump(second, first, zone)  # skipped: fold=1 reads it with the later offset


def _jump(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first whole second in (before, after] at which `zone` has the offset it has at
    `after`: where its clock jumps forward (transitions fall on whole seconds)."""
    offset = after.astimezone(zone).utcoffset()
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def quiet_until(now: datetime, periods: list[QuietPeriod], zone: str) -> datetime | None:
    """When the quiet period that `now` (aware) falls in ends (aware, in `zone`), or None
    outside quiet hours; when it ends, it is after `now`. Adjacent or overlapping periods are
    joined, up to a week: periods that never end (every day round the clock) end a week from
    `now`, and are looked at again then. Safe across daylight-saving changes (`wall_instant`):
    a period ending in the repeated hour ends at that time's second occurrence; one ending in
    the skipped hour ends when the clock jumps."""
    tz = ZoneInfo(zone)
    probe = now.astimezone(UTC)
    end: datetime | None = None
    for _ in range(MAX_JOINED_DAYS):
        found = _covering_end(probe, periods, tz)
        if found is None or (end is not None and found <= end):
            break
        end = probe = found
    return end.astimezone(tz) if end is not None else None


def _covering_end(probe: datetime, periods: list[QuietPeriod], tz: ZoneInfo) -> datetime | None:
    """The latest end of the periods whose span holds `probe` (UTC), or None."""
    today = probe.astimezone(tz).date()
    ends = [
        span[1]
        for back in (1, 0)
        for period in periods
        if (span := _period_spans(period, today - timedelta(days=back), tz))
        and span[0] <= probe < span[1]
    ]
    return max(ends, default=None)


def quiet_until_v1(now: datetime, periods: list[QuietPeriod], zone: str) -> datetime | None:
    """`quiet_until` before it was safe across daylight-saving changes (it compared wall
    times and lost `fold`: a period ending in the repeated hour could end before `now`). Kept
    only so incident runs that started before the `quiet-hours-dst` patch replay as they ran;
    remove with the patch."""
    local = now.astimezone(ZoneInfo(zone))
    end: datetime | None = None
    moved = True
    for _ in range(MAX_JOINED_DAYS):
        if not moved:
            break
        moved = False
        probe = end or local
        midnight = probe.replace(hour=0, minute=0, second=0, microsecond=0)
        for back in (1, 0):
            day = midnight - timedelta(days=back)
            for period in periods:
                span = _period_spans_v1(period, day)
                if span and span[0] <= probe < span[1] and (end is None or span[1] > end):
                    end, moved = span[1], True
    return end


def _period_spans_v1(period: QuietPeriod, day: datetime) -> tuple[datetime, datetime] | None:
    if WEEKDAYS[day.weekday()] not in period.days:
        return None
    start = day.replace(hour=period.start.hour, minute=period.start.minute)
    end = day.replace(hour=period.end.hour, minute=period.end.minute)
    if end <= start:
        end += timedelta(days=1)
    return start, end
