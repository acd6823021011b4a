"""Assessments: the answer asked of the LLM, the workflow's input, the task an activity gets,
and the assessment the results topic carries."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from riskflow.config.capacity import FailoverStep
from riskflow.config.llm import AssessmentPolicy
from riskflow.contracts.events import DetectionEvent
from riskflow.levels import RiskLevel

MAX_SUMMARY_CHARS = 2000
MAX_ANSWER_ITEMS = 20  # hazards, recommended_actions


class RiskAnswer(BaseModel):
    """The structured answer the LLM must give, as read by `riskflow.llm_text.answers.parse_answer`
    (which reads the reply leniently where its meaning is unambiguous). The model itself is
    strict: a score is an integer 0-100 (a boolean is not), lists hold strings."""

    model_config = ConfigDict(extra="ignore")

    risk_level: RiskLevel
    risk_score: int = Field(ge=0, le=100, strict=True)
    summary: str = Field(min_length=1, max_length=MAX_SUMMARY_CHARS)
    hazards: list[str] = Field(default_factory=list, max_length=MAX_ANSWER_ITEMS)
    recommended_actions: list[str] = Field(default_factory=list, max_length=MAX_ANSWER_ITEMS)
    adjustments: list[str] = Field(
        default_factory=list,
        description="What reading the reply changed, e.g. 'risk_score 120 clamped to 100'",
    )


class FailedAttempt(BaseModel):
    """An LLM attempt made before the workflow started (the incident's inline first attempt):
    the failure kind (`riskflow.contracts.failures`) and its detail, reacted to as its own."""

    kind: str
    detail: str = ""


class CarriedState(BaseModel):
    """What a workflow that continued as new (or the incident's first attempt, handing over)
    keeps of the runs before it."""

    llm_attempts: int = 0
    repairs: int = 0
    key_waits: int = 0
    key_waited_seconds: float = 0.0
    runs: int = 1
    free_rounds: int = Field(default=0, description="leases that did not count as attempts")
    without_history: bool = False
    text_only: bool = False
    failover_step: int = Field(default=0, description="the failover chain's current entry")
    failed_attempt: FailedAttempt | None = Field(
        default=None, description="the last attempt failed so: react to it before the next"
    )


class AssessmentInput(BaseModel):
    """What the bridge starts a workflow with."""

    assessment_id: str
    situation: str
    severity: int = 0
    event: DetectionEvent
    policy: AssessmentPolicy = Field(default_factory=AssessmentPolicy)
    trace_context: dict[str, str] = Field(default_factory=dict)
    carried: CarriedState | None = None


class Provenance(BaseModel):
    """What an assessment was made with, so any alert can be explained later: the prompt
    template and rubric versions (`riskflow.llm_text.prompt`, `riskflow.config.context`), a
    hash of the camera's context, the answer language, the provider and model asked, and the
    frame(s) whose detections (and snapshot, `image_ref`, when one was sent) the prompt carried."""

    prompt_version: str = ""
    rubric_version: str = ""
    context_version: str = ""
    language: str = ""
    provider: str = ""
    model: str = ""
    frame_ids: list[int] = Field(default_factory=list)
    image_ref: str | None = None


class AssessmentTask(BaseModel):
    """The prompt and everything the LLM call needs, built once per workflow."""

    assessment_id: str
    camera_id: str
    site_id: str = Field(default="", description="the camera's site, resolved once per event")
    model: str
    system_prompt: str
    user_prompt: str
    image_ref: str | None = None
    provenance: Provenance = Field(default_factory=Provenance)
    text_model: str = Field(default="", description="for a text-only assessment ('' = model)")
    user_prompt_without_history: str | None = None
    failover: list[FailoverStep] = Field(
        default_factory=list, description="the camera's failover chain (riskflow.config.capacity)"
    )
    estimated_tokens: int = Field(default=0, description="reserved per call (0: not counted)")
    severity: int = Field(default=0, description="the situation's severity (significance rules)")
    over_budget: str = Field(
        default="", description="the site budget limit reached ('' = within budget)"
    )
    budget_stop: bool = Field(default=False, description="over budget, `on_exhausted: stop`")


class Assessment(BaseModel):
    """The outcome of one workflow: what lands in Redis and on the results topic."""

    assessment_id: str
    camera_id: str
    situation: str
    status: Literal["assessed", "failed"]
    captured_at: datetime
    captured_ms: int = Field(description="captured_at in ms: orders results per camera")
    assessed_at: datetime
    frame_id: int
    risk_level: RiskLevel | None = None
    risk_score: int | None = None
    summary: str = ""
    hazards: list[str] = Field(default_factory=list)
    recommended_actions: list[str] = Field(default_factory=list)
    adjustments: list[str] = Field(
        default_factory=list, description="What reading the LLM's answer changed (RiskAnswer)"
    )
    failure_reason: str = ""
    key_id: str = ""
    llm_attempts: int = 0
    detections: dict[str, int] = Field(default_factory=dict, description="class -> count")
    provenance: Provenance = Field(default_factory=Provenance)
    degraded: bool = Field(
        default=False, description="answered by a failover entry after the first"
    )


class AggregateResult(BaseModel):
    latest_updated: bool
    alerted: bool
    published: bool


class StageTiming(BaseModel):
    stage: str
    started_at: datetime
    seconds: float | None = None


class AssessmentStatus(BaseModel):
    """Answer of the `status` query."""

    assessment_id: str
    stage: str = "queued"
    llm_attempts: int = 0
    repairs: int = 0
    key_waits: int = 0
    key_id: str = ""
    last_error: str = ""
    waiting_until: datetime | None = None
    timings: list[StageTiming] = Field(default_factory=list)
