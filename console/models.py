"""The console API's response models (and so its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from riskflow.contracts.incidents import IncidentState, IncidentView
from riskflow.levels import RiskLevel

T = TypeVar("T")

CAMERA_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class Page(BaseModel, Generic[T]):
    """One page of a list: `items`, the `total` matching the filters, `offset` and `limit`."""

    items: list[T]
    total: int = Field(ge=0)
    offset: int = Field(ge=0)
    limit: int = Field(ge=1)


class AssessmentView(BaseModel):
    """A camera's assessment as the console shows it (no key secrets: `key_id` only)."""

    assessment_id: str
    camera_id: str
    situation: str
    status: str
    risk_level: RiskLevel | None = None
    risk_score: int | None = None
    summary: str = ""
    hazards: list[str] = Field(default_factory=list)
    recommended_actions: list[str] = Field(default_factory=list)
    captured_at: datetime
    assessed_at: datetime
    key_id: str = ""
    has_snapshot: bool = False


class CameraView(BaseModel):
    """One camera tile: its site, latest assessment (if any) and open-incident count."""

    camera_id: str
    site_id: str
    site_name: str
    latest: AssessmentView | None = None
    open_incidents: int = Field(ge=0, description="open incidents of this camera")


class KeyView(BaseModel):
    """One API key's state (never its secret). Cooldown in seconds."""

    key_id: str
    quota_group: str
    enabled: bool
    disabled_reason: str
    qps_limit: int
    rpm_limit: int
    max_concurrency: int
    used_last_second: int
    used_last_minute: int
    in_flight: int
    cooldown_remaining_seconds: float
    strikes: int


class QuotaGroupView(BaseModel):
    """A quota group's limits (0: none configured) and calls in the last 1 s and 60 s."""

    name: str
    qps_limit: int
    rpm_limit: int
    used_last_second: int
    used_last_minute: int


class KeyPoolView(BaseModel):
    keys: list[KeyView]
    groups: list[QuotaGroupView]


class HealthView(BaseModel):
    status: str = Field(description="ok, or degraded when Redis does not answer")
    redis: bool


class IncidentItem(BaseModel):
    """One row of the incident list."""

    incident_id: str
    camera_id: str
    site_id: str
    family: str
    state: IncidentState
    severity: RiskLevel
    rule: str = ""
    summary: str = ""
    opened_at: datetime
    updated_at: datetime
    acknowledged_by: str = ""
    escalation_level: int = Field(description="highest escalation level notified; -1: none")


class IncidentDetail(BaseModel):
    """An incident (its timeline: frames, assessments, notifications, escalations, operator
    actions) and its assessments still in Redis, oldest first."""

    incident: IncidentView
    assessments: list[AssessmentView]


class ActionBody(BaseModel):
    """What an action may carry: the comment's text, or the reason of a false alarm; for an
    acknowledgement, the minutes until the person is there (`eta_minutes`: the incident
    looks at the camera again then, README "Acknowledged is not done"; other actions ignore
    it)."""

    text: str = Field(default="", max_length=2000)
    eta_minutes: int | None = Field(default=None, ge=1, le=240)


class ActionResult(BaseModel):
    """The incident workflow's answer: the incident's state after the action."""

    ok: bool
    message: str
    incident_id: str
    state: IncidentState


class Problem(BaseModel):
    """Every error: `detail` says what was wrong."""

    detail: str | list[dict[str, object]]
