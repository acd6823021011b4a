"""On-call rosters (`oncall:` in riskflow.yaml): who is on call at a site at any moment, by
rotations in the site's time zone, layered, with temporary overrides.

```yaml
oncall:
  rosters:
    - id: night-ops               # escalation steps and `riskflow oncall` name it
      site: plant-a               # its time zone is the roster's
      manager: site.manager       # a person of config/people.yaml (the roster's manager)
      layers:                     # a later layer wins where it covers the moment
        - name: weekly
          rotation: weekly        # daily | weekly | shifts
          members: [wang.gong, li.wei, zhao]
          start: 2026-12-07       # the first hand-off's date (weekly: its weekday is the day)
          handoff: "08:00"        # local wall-clock time of each hand-off
        - name: nights
          rotation: shifts        # one hand-off at each of these times, every day
          handoffs: ["08:00", "20:00"]
          members: [ma.li, zhou]
          start: 2026-12-07
          only: {start: "20:00", end: "08:00"}   # this layer covers only these hours
      overrides:                  # "Li covers for Wang on the 12th": wins over every layer
        - {person: li.wei, start: 2026-12-12T08:00, end: 2026-12-13T08:00, reason: swap}
```

Hand-offs happen at local wall-clock times: a daily hand-off at 08:00 is at 08:00 on the day
after a DST change too (that day lasts 23 or 25 hours); a wall-clock time the change skips
(02:30 on the spring-forward day) is read with `fold=0`, as `zoneinfo` gives it.
`on_call(roster, zone, at)` is the pure decision (the clock a parameter); `shifts` lists who is
on call over a span, hand-off by hand-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

Rotation = Literal["daily", "weekly", "shifts"]
ID = r"^[A-Za-z0-9_.-]{1,64}$"
PERSON = r"^[A-Za-z0-9_.@-]{1,64}$"
LOOK_DAYS = 8  # a hand-off is never further than a week (and a day) away


class DailyWindow(BaseModel):
    """The hours of each day a layer covers (local; `end` <= `start` wraps past midnight)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time

    def covers(self, local: datetime) -> bool:
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end


class Layer(BaseModel):
    """One rotation: `members` (people ids) take turns at each hand-off, from `start`'s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=ID)
    rotation: Rotation = "weekly"
    members: list[str] = Field(min_length=1, max_length=100)
    start: date
    handoff: time = time(8, 0)
    handoffs: list[time] = Field(default_factory=list, max_length=24)
    only: DailyWindow | None = None

    @model_validator(mode="after")
    def _times(self) -> Layer:
        if self.rotation == "shifts" and not self.handoffs:
            raise ValueError("a shifts rotation needs its daily 'handoffs' times")
        if self.rotation != "shifts" and self.handoffs:
            raise ValueError("'handoffs' is for a shifts rotation (daily, weekly: 'handoff')")
        if len(set(self.handoffs)) != len(self.handoffs):
            raise ValueError("'handoffs' are different times of the day")
        return self

    def day_handoffs(self, day: date) -> list[tuple[int, datetime]]:
        """The hand-offs on local date `day`: (its index from the first, wall-clock time)."""
        days = (day - self.start).days
        if days < 0:
            return []
        if self.rotation == "daily":
            return [(days, datetime.combine(day, self.handoff))]
        if self.rotation == "weekly":
            return [(days // 7, datetime.combine(day, self.handoff))] if days % 7 == 0 else []
        times = sorted(self.handoffs)
        return [(days * len(times) + i, datetime.combine(day, t)) for i, t in enumerate(times)]


class Override(BaseModel):
    """`person` is on call from `start` to `end` (local wall-clock times), over every layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    person: str = Field(pattern=PERSON)
    start: datetime
    end: datetime
    reason: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _order(self) -> Override:
        if self.end <= self.start:
            raise ValueError("an override ends after it starts")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("an override's times are the site's wall-clock times (no offset)")
        return self


class Roster(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID)
    site: str = Field(pattern=ID)
    manager: str | None = Field(default=None, pattern=PERSON)
    layers: list[Layer] = Field(min_length=1, max_length=10)
    overrides: list[Override] = Field(default_factory=list, max_length=500)

    def people(self) -> set[str]:
        """Everyone the roster names."""
        named = {m for layer in self.layers for m in layer.members}
        named |= {o.person for o in self.overrides}
        return named | ({self.manager} if self.manager else set())


class OnCallSettings(BaseModel):
    """`oncall:`: the rosters (ids unique)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rosters: list[Roster] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> OnCallSettings:
        ids = [r.id for r in self.rosters]
        if len(ids) != len(set(ids)):
            raise ValueError(f"roster ids must be unique: {ids}")
        return self

    def roster(self, roster_id: str) -> Roster | None:
        return next((r for r in self.rosters if r.id == roster_id), None)


@dataclass(frozen=True)
class OnCall:
    """Who is on call for `roster` (`person`), by which layer (`source`; "override"), from
    `since` until `until` (aware)."""

    roster: str
    person: str
    source: str
    since: datetime
    until: datetime


def _aware(wall: datetime, zone: ZoneInfo) -> datetime:
    return wall.replace(tzinfo=zone, fold=0)


def _layer_at(layer: Layer, zone: ZoneInfo, at: datetime) -> tuple[str, datetime, datetime] | None:
    """The member of `layer` on call at `at`, since their hand-off, until the next."""
    local_day = at.astimezone(zone).date()
    since: tuple[int, datetime] | None = None
    for back in range(LOOK_DAYS + 1):
        earlier = [
            (k, _aware(w, zone))
            for k, w in layer.day_handoffs(local_day - timedelta(days=back))
            if _aware(w, zone) <= at
        ]
        if earlier:
            since = max(earlier, key=lambda h: h[1])
            break
    if since is None:
        return None
    until = min(
        (
            _aware(w, zone)
            for ahead in range(LOOK_DAYS + 1)
            for _, w in layer.day_handoffs(local_day + timedelta(days=ahead))
            if _aware(w, zone) > at
        ),
        default=since[1] + timedelta(days=LOOK_DAYS),
    )
    return layer.members[since[0] % len(layer.members)], since[1], until


def _next_wall(local: datetime, wall: time, zone: ZoneInfo) -> datetime:
    """The next instant after `local` whose wall-clock time is `wall` (today or tomorrow)."""
    for ahead in (0, 1, 2):
        candidate = _aware(datetime.combine(local.date() + timedelta(days=ahead), wall), zone)
        if candidate > local:
            return candidate
    raise AssertionError("a wall-clock time comes back within two days")


def _last_wall(local: datetime, wall: time, zone: ZoneInfo) -> datetime:
    """The last instant at or before `local` whose wall-clock time is `wall`."""
    for back in (0, 1, 2):
        candidate = _aware(datetime.combine(local.date() - timedelta(days=back), wall), zone)
        if candidate <= local:
            return candidate
    raise AssertionError("a wall-clock time came within two days")


def _changes(roster: Roster, zone: ZoneInfo, at: datetime, chosen: int) -> list[datetime]:
    """When else the answer may change after `at`: an override starting, the chosen layer's
    window ending, a higher layer's window starting."""
    local = at.astimezone(zone)
    found = [_aware(o.start, zone) for o in roster.overrides if _aware(o.start, zone) > at]
    for i, layer in enumerate(roster.layers):
        if layer.only is None:
            continue
        if i == chosen:
            found.append(_next_wall(local, layer.only.end, zone))
        elif i > chosen:
            found.append(_next_wall(local, layer.only.start, zone))
    return found


def _changed(roster: Roster, zone: ZoneInfo, at: datetime, chosen: int) -> list[datetime]:
    """When the answer may last have changed before `at` otherwise than by a hand-off: an
    override ending, the chosen layer's window starting, a higher layer's window ending."""
    local = at.astimezone(zone)
    found = [_aware(o.end, zone) for o in roster.overrides if _aware(o.end, zone) <= at]
    for i, layer in enumerate(roster.layers):
        if layer.only is None:
            continue
        if i == chosen:
            found.append(_last_wall(local, layer.only.start, zone))
        elif i > chosen:
            found.append(_last_wall(local, layer.only.end, zone))
    return found


def on_call(roster: Roster, zone: ZoneInfo, at: datetime) -> OnCall | None:
    """Who is on call at `at` (aware): an override covering it, else the last layer that
    covers it; None when no layer has started yet. `since` and `until`: the last and the
    next moment the answer may change (a hand-off, a window's edge, an override's start or
    end)."""
    if at.tzinfo is None:
        raise ValueError("on_call needs an aware time")
    for override in roster.overrides:
        start, end = _aware(override.start, zone), _aware(override.end, zone)
        if start <= at < end:
            return OnCall(roster.id, override.person, "override", start, end)
    local = at.astimezone(zone)
    for i in reversed(range(len(roster.layers))):
        layer = roster.layers[i]
        if layer.only is not None and not layer.only.covers(local):
            continue
        found = _layer_at(layer, zone, at)
        if found is not None:
            person, since, until = found
            since = max([since, *_changed(roster, zone, at, i)])
            until = min([until, *_changes(roster, zone, at, i)])
            return OnCall(roster.id, person, layer.name, since, until)
    return None


def shifts(roster: Roster, zone: ZoneInfo, start: datetime, end: datetime) -> list[OnCall]:
    """Who is on call from `start` to `end`, one entry each time the answer changes (the
    first from `start`, the last until `end`)."""
    found: list[OnCall] = []
    at = start
    while at < end:
        now = on_call(roster, zone, at)
        if now is None:
            at += timedelta(hours=1)  # before every layer starts
            continue
        until = min(now.until, end)
        if found and (found[-1].person, found[-1].source) == (now.person, now.source):
            last = found[-1]
            found[-1] = OnCall(last.roster, last.person, last.source, last.since, until)
        else:
            since = max(now.since, start)
            found.append(OnCall(roster.id, now.person, now.source, since, until))
        at = until
    return found
