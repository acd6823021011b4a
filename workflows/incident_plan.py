"""Pure decisions of the incident workflow: which escalation step is due when, whether a new
frame escalates the situation, and how the incident's bounded records are kept. Nothing here
changes a view: each function returns a value (a `Step`, a reason, a new view)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from riskflow.config.incidents import IncidentConfig
from riskflow.contracts.assessment import Assessment
from riskflow.contracts.incidents import (
    EventKind,
    FrameRef,
    IncidentEvent,
    IncidentFrame,
    IncidentStart,
    IncidentView,
    TimelineEntry,
    incident_link,
)
from riskflow.contracts.notifications import NotificationKind, NotificationRequest
from riskflow.levels import RiskLevel


@dataclass(frozen=True)
class Step:
    """One step of the escalation ladder: `level` (0 first) and `repeat` (0: the level
    itself, n: its n-th repeat), `due` when known. Its `name` (`L1`, `L2r3`) is how the view
    records it (`steps_sent`, `held`) and part of its messages' idempotency keys."""

    level: int
    repeat: int = 0
    due: datetime | None = None

    @property
    def name(self) -> str:
        return f"L{self.level}" if self.repeat == 0 else f"L{self.level}r{self.repeat}"

    @property
    def kind(self) -> NotificationKind:
        if self.repeat:
            return "reminder"
        return "opened" if self.level == 0 else "escalated"

    @classmethod
    def of_name(cls, name: str) -> Step:
        """The step a recorded name stands for (`L2r3` -> level 2, repeat 3)."""
        match = _STEP_NAME.fullmatch(name)
        if match is None:
            raise ValueError(f"not a step name: {name!r}")
        return cls(level=int(match[1]), repeat=int(match[2] or 0))


_STEP_NAME = re.compile(r"L(\d+)(?:r(\d+))?")


def next_step(view: IncidentView, config: IncidentConfig) -> Step | None:
    """The next escalation step not yet sent or held, with its due time, or None when the
    ladder (and its repeats) is done. Times count from the first notification (level 0 is
    due at once: `view.opened_at` when nothing was notified yet)."""
    done = set(view.steps_sent) | set(view.held)
    origin = view.notified_at or view.opened_at
    ladder = config.escalation
    for level, rung in enumerate(ladder):
        if Step(level).name not in done:
            return Step(level, 0, origin + timedelta(seconds=rung.after_seconds))
    if not config.repeat_seconds:
        return None
    last = len(ladder) - 1
    for repeat in range(1, config.max_repeats + 1):
        if Step(last, repeat).name not in done:
            due = ladder[-1].after_seconds + repeat * config.repeat_seconds
            return Step(last, repeat, origin + timedelta(seconds=due))
    return None


def due_steps(view: IncidentView, config: IncidentConfig, now: datetime) -> list[Step]:
    """Every step due at `now`, in ladder order (more than one after an outage, or when
    levels share a time)."""
    due: list[Step] = []
    probe = view
    while (step := next_step(probe, config)) is not None and step.due is not None:
        if step.due > now:
            break
        due.append(step)
        probe = probe.model_copy(update={"steps_sent": [*probe.steps_sent, step.name]})
    return due


def highest_level(names: list[str]) -> int:
    """The highest ladder level among recorded step names (-1: none)."""
    return max((Step.of_name(name).level for name in names), default=-1)


def reassess_due(view: IncidentView, config: IncidentConfig, new_frame: bool) -> datetime | None:
    """When the open incident reassesses its newest frame: `reassess_every_seconds` after
    its last assessment (or its opening), and only when a matching frame arrived since
    (`new_frame`); None when off, closed or nothing new."""
    if not config.reassess_every_seconds or not new_frame or view.state.closed:
        return None
    since = view.assessed_at or view.opened_at
    return since + timedelta(seconds=config.reassess_every_seconds)


def severity_of_rule(rule_severity: int) -> RiskLevel:
    """The incident's severity until an assessment says otherwise (or when none could be
    made): significance rule severity 5 and above (a fall) is high, 2-4 medium, else low."""
    if rule_severity >= 5:
        return RiskLevel.HIGH
    return RiskLevel.MEDIUM if rule_severity >= 2 else RiskLevel.LOW


def escalation_reason(view: IncidentView, frame: IncidentFrame, config: IncidentConfig) -> str:
    """Why this matching frame calls for a new assessment ("" when it does not): a more
    severe rule, a count grown by `count_step` past the most seen so far, or a new class."""
    if frame.severity > view.rule_severity:
        return f"more severe situation: {frame.rule} (was {view.rule})"
    if view.max_count and frame.count >= view.max_count + config.count_step:
        return f"count grew to {frame.count} (was {view.max_count})"
    new = sorted(set(classes_of(frame)) - set(view.classes))
    if view.classes and new:
        return f"new class: {', '.join(new)}"
    return ""


def classes_of(frame: IncidentFrame) -> list[str]:
    return sorted(Counter(d.class_name for d in frame.event.detections))


def frame_ref(frame: IncidentFrame) -> FrameRef:
    event = frame.event
    snapshot = f"{event.snapshot.store}:{event.snapshot.ref}" if event.snapshot else ""
    return FrameRef(
        frame_id=event.frame_id,
        captured_at=event.captured_at,
        rule=frame.rule,
        count=frame.count,
        classes=dict(Counter(d.class_name for d in event.detections)),
        snapshot=snapshot,
    )


def reopens(view: IncidentView, frame: IncidentFrame, cooldown_seconds: float) -> bool:
    """Whether a frame reaching the closed incident `view` opens a new one: the close marker's
    rule (`activities.incidents.IncidentActivities.gate`, which a new run asks): a matching
    frame captured after the close (its newest frame, plus a dismissal's `cooldown_seconds`),
    or one more severe than any the incident saw."""
    if not frame.rule or view.closed_at is None:
        return False
    last = max([view.closed_at, *(f.captured_at for f in view.recent_frames)])
    until = last + timedelta(seconds=cooldown_seconds)
    return frame.severity > view.rule_severity or frame.event.captured_at > until


def frame_key(frame: IncidentFrame) -> str:
    """Identity of a frame for deduplication: camera + frame id."""
    return f"{frame.event.camera_id}:{frame.event.frame_id}"


def with_frame(
    view: IncidentView, frame: IncidentFrame, config: IncidentConfig, now: datetime
) -> IncidentView:
    """The view with a matching frame added to its summary: counts (of any rule, and of the
    most severe rule itself), classes, the last `max_frames` refs, the most severe rule;
    `last_match_at` is when it arrived (`now`, the
    workflow's clock, not the camera's)."""
    update: dict[str, object] = {
        "frames_seen": view.frames_seen + 1,
        "recent_frames": [*view.recent_frames, frame_ref(frame)][-config.max_frames :],
        "max_count": max(view.max_count, frame.count),
        "classes": sorted(set(view.classes) | set(classes_of(frame))),
        "last_match_at": now,
    }
    if frame.severity > view.rule_severity:
        update |= {"rule": frame.rule, "rule_severity": frame.severity, "rule_count": frame.count}
    elif frame.rule == view.rule:
        update["rule_count"] = max(view.rule_count, frame.count)
    return view.model_copy(update=update)


def with_entry(view: IncidentView, entry: TimelineEntry, limit: int) -> IncidentView:
    """The view with `entry` appended to its timeline; beyond `limit`, the oldest entries
    after the first go."""
    timeline = [*view.timeline, entry]
    if len(timeline) > limit:
        timeline = [timeline[0], *timeline[len(timeline) - limit + 1 :]]
    return view.model_copy(update={"timeline": timeline})


def coalesced(frames: list[IncidentFrame], limit: int) -> list[IncidentFrame]:
    """At most `limit` (>= 2) frames, in arrival order: the most severe, the newest of each
    rule (clear frames are rule ""), then the newest others. A backlog (a stall, a burst)
    never grows without bound and never loses the worst it saw."""
    if len(frames) <= limit:
        return frames
    worst = max(range(len(frames)), key=lambda i: (frames[i].severity, i))
    newest = {frame.rule: i for i, frame in enumerate(frames)}
    keep = {worst, *sorted(newest.values())[-(limit - 1) :]}
    i = len(frames) - 1
    while len(keep) < limit:
        keep.add(i)
        i -= 1
    return [frames[i] for i in sorted(keep)]


def notification(
    inp: IncidentStart,
    view: IncidentView,
    kind: NotificationKind,
    level: int,
    step: str,
    channel: str,
) -> NotificationRequest:
    """The message of one incident step to one channel; its idempotency key
    `<incident id>:<step>:<channel>` is the same however often the step is retried."""
    return NotificationRequest(
        idempotency_key=f"{view.incident_id}:{step}:{channel}",
        channel=channel,
        kind=kind,
        incident_id=view.incident_id,
        site_id=view.site_id,
        site_name=inp.site_name,
        camera_id=view.camera_id,
        severity=view.severity,
        state=view.state.value,
        escalation_level=level,
        situation=view.rule or view.family,
        summary=view.summary,
        hazards=view.hazards,
        recommended_actions=view.recommended_actions,
        opened_at=view.opened_at,
        console_url=incident_link(inp.console_url, view.incident_id),
        language=inp.language,
        timezone=inp.timezone,
    )


def event_of(
    view: IncidentView, kind: EventKind, actor: str, detail: str, level: int
) -> IncidentEvent:
    """The lifecycle event of the view's current version (its `event_id`)."""
    return IncidentEvent(
        event_id=f"{view.incident_id}:{view.version}",
        kind=kind,
        incident_id=view.incident_id,
        camera_id=view.camera_id,
        site_id=view.site_id,
        state=view.state,
        severity=view.severity,
        at=view.updated_at,
        actor=actor,
        detail=detail,
        escalation_level=level,
    )


def confidently_gone(result: Assessment | None, config: IncidentConfig) -> bool:
    """Whether a resolution check's answer says the hazard is gone: at or below
    `resolve_max_level` and `resolve_max_score` (None, a failed check: no)."""
    level = result.risk_level if result is not None else None
    return (
        result is not None
        and level is not None
        and level.rank <= config.resolve_max_level.rank
        and (result.risk_score or 0) <= config.resolve_max_score
    )
