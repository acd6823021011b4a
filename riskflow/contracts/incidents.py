"""Incidents: one durable incident per camera and situation family (`IncidentWorkflow`).

The bridge starts an incident with signal-with-start (`IncidentStart` + an `IncidentFrame`
signal); operators act through updates (`OperatorAction`); `IncidentView` is what the
`incident` query, the Redis view `incident:{id}` and the CLI show; `IncidentEvent` goes on the
`incident-events` topic (consumers dedupe on `event_id`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, Field

from riskflow.config.incidents import IncidentConfig
from riskflow.config.llm import AssessmentPolicy
from riskflow.config.sites import Language
from riskflow.contracts.events import DetectionEvent
from riskflow.contracts.notifications import NotificationRequest
from riskflow.levels import RiskLevel

# Error types of the operator updates (ApplicationError.type), for clients to tell apart.
INVALID_TRANSITION = "InvalidTransition"
INVALID_ACTION = "InvalidAction"
OTHER_INCIDENT = "OtherIncident"  # meant for an incident that is not the workflow's current one
# Actors in the timeline besides operators.
SYSTEM_ACTOR = "system"
LLM_ACTOR = "llm"
AUTO_RESOLVER = "auto-resolve"


class IncidentState(StrEnum):
    OPEN = "open"
    NOTIFIED = "notified"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"
    EXPIRED = "expired"

    @property
    def closed(self) -> bool:
        return self in (IncidentState.RESOLVED, IncidentState.DISMISSED, IncidentState.EXPIRED)


EventKind = Literal[
    "opened",
    "assessed",
    "notified",
    "escalated",
    "held",
    "acknowledged",
    "commented",
    "resolved",
    "dismissed",
    "expired",
]


def incident_workflow_id(camera_id: str, family: str) -> str:
    """One workflow id per camera and situation family: a running incident receives every
    frame of its situation (conflict policy USE_EXISTING)."""
    return f"incident-{camera_id}-{family}"


def incident_link(console_url: str, incident_id: str) -> str:
    """The console's page of the incident (`{console_url}/incidents/{id}`, the id
    percent-encoded), or "" when no console URL is configured."""
    if not console_url:
        return ""
    return f"{console_url.rstrip('/')}/incidents/{quote(incident_id, safe='')}"


class IncidentFrame(BaseModel):
    """A frame of the camera, signalled to its incident. `rule` is the most severe matching
    significance rule ("" when the frame shows nothing matching: a clear frame)."""

    event: DetectionEvent
    rule: str = ""
    severity: int = 0
    count: int = 0


class FrameRef(BaseModel):
    """What the incident keeps of a frame (not the frame)."""

    frame_id: int
    captured_at: datetime
    rule: str
    count: int
    classes: dict[str, int] = Field(default_factory=dict)
    snapshot: str = ""


class TimelineEntry(BaseModel):
    at: datetime
    kind: EventKind
    actor: str = Field(description="'system', 'llm' or the operator's name")
    detail: str = ""


class IncidentView(BaseModel):
    """The incident as operators see it; also what continue-as-new carries over."""

    incident_id: str
    workflow_id: str
    run_id: str = ""
    camera_id: str
    site_id: str
    family: str
    state: IncidentState = IncidentState.OPEN
    severity: RiskLevel = RiskLevel.MEDIUM
    rule: str = ""
    rule_severity: int = 0
    max_count: int = 0
    rule_count: int = Field(default=0, description="the largest count seen of `rule` itself")
    classes: list[str] = Field(default_factory=list)
    summary: str = ""
    hazards: list[str] = Field(default_factory=list)
    recommended_actions: list[str] = Field(default_factory=list)
    opened_at: datetime
    updated_at: datetime
    notified_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    closed_at: datetime | None = None
    closed_by: str = ""
    escalation_level: int = -1
    steps_sent: list[str] = Field(default_factory=list, description="notified step names")
    held: list[str] = Field(default_factory=list, description="steps held by quiet hours")
    frames_seen: int = 0
    last_match_at: datetime | None = Field(default=None, description="workflow time")
    clear_at: datetime | None = Field(
        default=None, description="workflow time the newest frame without a match arrived"
    )
    checked_at: datetime | None = Field(default=None, description="last resolution check")
    follow_up_at: datetime | None = Field(
        default=None, description="when an acknowledgement's ETA runs out (the camera is checked)"
    )
    assessed_at: datetime | None = Field(
        default=None, description="last assessment of a matching frame (workflow time)"
    )
    recent_frames: list[FrameRef] = Field(default_factory=list)
    assessments: int = 0
    timeline: list[TimelineEntry] = Field(default_factory=list)
    version: int = 0


class IncidentStart(BaseModel):
    """What the bridge starts an incident with (fixed in history); the first frame arrives as
    the start signal. `carried` is set by continue-as-new."""

    workflow_id: str
    camera_id: str
    family: str
    site_id: str
    site_name: str = ""
    language: Language = "en"
    timezone: str = "UTC"
    config: IncidentConfig = Field(default_factory=IncidentConfig)
    policy: AssessmentPolicy = Field(default_factory=AssessmentPolicy)
    console_url: str = Field(
        default="", description="the console's base URL; notifications link to the incident's page"
    )
    carried: IncidentView | None = None
    seen: list[str] = Field(default_factory=list, description="recent camera:frame keys")
    pending: list[IncidentFrame] = Field(default_factory=list)
    clear: IncidentFrame | None = Field(default=None, description="newest clear frame")
    newest: IncidentFrame | None = Field(
        default=None, description="newest matching frame not assessed yet"
    )
    sends: list[NotificationRequest] = Field(
        default_factory=list, description="messages still in flight at continue-as-new"
    )
    sends_since: dict[str, datetime] = Field(
        default_factory=dict,
        description="when each carried message (by idempotency key) was first tried",
    )


class OperatorAction(BaseModel):
    """An operator's ack / resolve / dismiss / comment. `by`: the operator's name.

    `incident_id`: the incident it is meant for. One workflow id serves a camera's
    situation family across incidents (a closed incident's workflow ends; the next one
    starts under the same id), so an action sent to the workflow id can reach the next
    incident: the workflow refuses one whose incident id is not its current incident's.
    Empty (senders from before the field) is not checked."""

    by: str = Field(min_length=1, max_length=64)
    text: str = Field(default="", max_length=2000, description="reason or comment")
    incident_id: str = Field(default="", max_length=300, description="the incident it is for")
    eta_minutes: int | None = Field(
        default=None,
        ge=1,
        le=24 * 60,
        description="ack: the acknowledger expects to be there in this many minutes; when "
        "they run out the incident checks the camera again (still there: escalation resumes)",
    )


class IncidentEvent(BaseModel):
    """One lifecycle step, on the `incident-events` topic (key: camera id)."""

    event_id: str
    kind: EventKind
    incident_id: str
    camera_id: str
    site_id: str
    state: IncidentState
    severity: RiskLevel
    at: datetime
    actor: str = "system"
    detail: str = ""
    escalation_level: int = -1


class IncidentRecord(BaseModel):
    """What the record activity writes: the view (Redis) and the events since the last
    record (topic), oldest first."""

    view: IncidentView
    events: list[IncidentEvent]
    cooldown_seconds: float = Field(
        default=0.0, ge=0, description="after a close: frames this much newer open nothing"
    )


class IncidentGate(BaseModel):
    """Asked when a run starts: frames captured at or before `closed_until` belong to a
    closed incident (or its dismissal cooldown) and open nothing, unless their rule is more
    severe than any the closed incident saw (`severity`: the frame's rule severity; a
    dismissed crowd never hides a fall)."""

    workflow_id: str
    captured_at: datetime
    severity: int = 0


class IncidentGateResult(BaseModel):
    admitted: bool
    closed_until: datetime | None = None
