"""Replay's records and the typed input and output of the replay workflow: a recorded event
with its live assessment (and, optionally, a label), one candidate's task input, and the
outcome a candidate produced (`riskflow replay`; the candidates themselves are
`riskflow.config.replay`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from riskflow.config.prices import TokenUsage
from riskflow.config.replay import Candidate
from riskflow.contracts.assessment import Assessment, AssessmentInput
from riskflow.contracts.events import DetectionEvent
from riskflow.levels import RiskLevel

Label = Literal["confirmed", "false_alarm"]


class RecordedEvent(BaseModel):
    """One line of a replay file: the detection message, and optionally the situation the
    bridge flagged, a snapshot (JPEG, base64), an operator label and an expected level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: DetectionEvent
    situation: str = ""
    snapshot_b64: str | None = None
    label: Label | None = None
    expected_level: RiskLevel | None = None


class ReplayTaskInput(BaseModel):
    """What the replay workflow runs: one event under one candidate."""

    assessment: AssessmentInput
    candidate: Candidate


class ReplayOutcome(BaseModel):
    """The replay workflow's result: the assessment it would have stored, and the cost."""

    candidate: str
    assessment: Assessment
    usage: TokenUsage = Field(default_factory=TokenUsage)
    latency_ms: float = 0.0
