"""Pure decisions of the incident workflow: which escalation step is due when, whether a new
frame escalates the situation, and how the incident's bounded records are kept."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from riskflow.incident_config import IncidentConfig
from riskflow.incidents import (
    EventKind,
    FrameRef,
    IncidentEvent,
    IncidentFrame,
    IncidentStart,
    IncidentView,
    TimelineEntry,
    incident_link,
)
from riskflow.models import RiskLevel
from riskflow.notifications import NotificationKind, NotificationRequest


def step_name(level: int, repeat: int) -> str:
    """`L1` for level 1, `L2r3` for the third repeat of level 2."""
    return f"L{level}" if repeat == 0 else f"L{level}r{repeat}"


def next_step(view: IncidentView, config: IncidentConfig) -> tuple[str, int, datetime] | None:
    """The next escalation step not yet sent or held: (name, level, due time), or None when
    the ladder (and its repeats) is done. Times count from the first notification (level 0
    is due at once: `view.opened_at` when nothing was notified yet)."""
    done = set(view.steps_sent) | set(view.held)
    origin = view.notified_at or view.opened_at
    ladder = config.escalation
    for level, step in enumerate(ladder):
        name = step_name(level, 0)
        if name not in done:
            return name, level, origin + timedelta(seconds=step.after_seconds)
    if not config.repeat_seconds:
        return None
    last = len(ladder) - 1
    for repeat in range(1, config.max_repeats + 1):
        name = step_name(last, repeat)
        if name not in done:
            due = ladder[-1].after_seconds + repeat * config.repeat_seconds
            return name, last, origin + timedelta(seconds=due)
    return None


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


def frame_key(frame: IncidentFrame) -> str:
    """Identity of a frame for deduplication: camera + frame id."""
    return f"{frame.event.camera_id}:{frame.event.frame_id}"


def keep_frame(
    view: IncidentView, frame: IncidentFrame, config: IncidentConfig, now: datetime
) -> None:
    """Add a matching frame to the summary: counts, classes, the last `max_frames` refs;
    `last_match_at` is when it arrived (`now`, the workflow's clock, not the camera's)."""
    view.frames_seen += 1
    view.recent_frames = [*view.recent_frames, frame_ref(frame)][-config.max_frames :]
    view.max_count = max(view.max_count, frame.count)
    view.classes = sorted(set(view.classes) | set(classes_of(frame)))
    if frame.severity > view.rule_severity:
        view.rule, view.rule_severity = frame.rule, frame.severity
    view.last_match_at = now


def add_entry(view: IncidentView, entry: TimelineEntry, limit: int) -> None:
    """Append to the timeline; beyond `limit`, the oldest entries after the first go."""
    timeline = [*view.timeline, entry]
    if len(timeline) > limit:
        timeline = [timeline[0], *timeline[len(timeline) - limit + 1 :]]
    view.timeline = timeline


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
