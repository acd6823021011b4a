"""Leases and LLM calls: what an activity asks the key pool for, and what a call takes and gives."""

from __future__ import annotations

from pydantic import BaseModel, Field

from riskflow.config.capacity import FailoverStep
from riskflow.config.prices import TokenUsage
from riskflow.contracts.assessment import AssessmentTask, RiskAnswer


class LeaseRequest(BaseModel):
    assessment_id: str
    ttl_seconds: float = 120.0
    quota_groups: list[str] = Field(default_factory=list, description="only these ([]: any)")
    tokens: int = Field(default=0, ge=0, description="estimated tokens to reserve")
    severity: int = Field(
        default=0, ge=0, le=100, description="more severe waiters are served first (rules: 0-10)"
    )
    waiter: str = Field(default="", description="who waits (the assessment id; '' = none)")
    camera_id: str = Field(default="", description="the waiter's camera (fair turns)")

    @classmethod
    def for_step(
        cls, assessment_id: str, task: AssessmentTask, step: FailoverStep | None, ttl: float
    ) -> LeaseRequest:
        """The lease an attempt of `task` asks for at failover entry `step` (None: no chain,
        any key): that entry's quota groups, the task's token estimate, severity and camera;
        the assessment waits in line under its own id."""
        return cls(
            assessment_id=assessment_id,
            ttl_seconds=ttl,
            quota_groups=step.quota_groups if step else [],
            tokens=task.estimated_tokens,
            severity=task.severity,
            waiter=assessment_id,
            camera_id=task.camera_id,
        )


class KeyLease(BaseModel):
    """A granted lease: the key's id, never its secret."""

    lease_id: str
    key_id: str
    quota_group: str
    expires_at_ms: int


class LeaseResult(BaseModel):
    """Either a lease, or when the earliest one may be granted."""

    lease: KeyLease | None = None
    retry_after_seconds: float = 0.0
    reason: str = ""


class LLMCallInput(BaseModel):
    task: AssessmentTask
    lease: KeyLease
    repair_of: str | None = Field(
        default=None, description="A previous unparseable answer to ask the model to repair"
    )
    without_history: bool = False
    text_only: bool = Field(default=False, description="no image; the text model")
    vision_model: str = Field(default="", description="a failover entry's ('' = not pinned)")
    text_model: str = Field(default="", description="a failover entry's ('' = not pinned)")

    @classmethod
    def for_step(
        cls,
        task: AssessmentTask,
        lease: KeyLease,
        step: FailoverStep | None,
        *,
        repair_of: str | None = None,
        without_history: bool = False,
        text_only: bool = False,
    ) -> LLMCallInput:
        """The call for `lease` at failover entry `step`: the entry's models (pinned) and its
        text-only, on top of what the loop decided (`text_only`, a repair, no history)."""
        return cls(
            task=task,
            lease=lease,
            repair_of=repair_of,
            without_history=without_history,
            text_only=text_only or (step is not None and step.text_only),
            vision_model=step.model_for(True) if step else "",
            text_model=step.model_for(False) if step else "",
        )


class LeasedCallInput(BaseModel):
    """One LLM attempt that leases its own key (`lease_and_call_llm`): the lease lives only
    inside the activity, from grant to release."""

    assessment_id: str
    task: AssessmentTask
    ttl_seconds: float = 120.0


class LLMCallOutput(BaseModel):
    answer: RiskAnswer
    request_id: str = ""
    usage: TokenUsage = Field(default_factory=TokenUsage)
    latency_ms: float = 0.0
    model: str = Field(default="", description="the model that answered")
    provider: str = Field(default="", description="the provider that answered ('' = unknown)")
    image_sent: bool = Field(default=False, description="the request carried the snapshot")


class LeasedCallOutput(BaseModel):
    """The answer and the key that gave it, or (`output` None) the pool's wait: no key now."""

    output: LLMCallOutput | None = None
    key_id: str = ""
    wait: LeaseResult = Field(default_factory=LeaseResult)
