"""What the incident workflow asks a notification channel to send, and what it gets back.

The workflow builds one `NotificationRequest` per incident step and channel; the channel
activity (`activities.notify`) renders it in the site's language for its vendor and sends it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from riskflow.config.sites import Language
from riskflow.levels import RiskLevel

# The `type` of the ApplicationError the notify activity raises (Temporal retries per its policy).
NOTIFY_RATE_LIMITED = "NotificationRateLimited"  # vendor rate limit: retried after a delay
NOTIFY_CHANNEL_ERROR = "NotificationChannelError"  # 5xx, transport, unknown vendor code: retried
NOTIFY_IN_FLIGHT = "NotificationInFlight"  # another attempt of this key is sending: retried
NOTIFY_PACED = "NotificationPaced"  # the robot's window is full: parked, retried when it frees
NOTIFY_REJECTED = "NotificationRejected"  # bad configuration or format: non-retryable
NOTIFY_UNKNOWN_CHANNEL = "UnknownChannel"  # the channel is not configured: non-retryable

# opened: the first message (the detector's facts; `assessment_pending` until the LLM answers);
# assessed: the assessment that followed, to whoever was told; upgraded: the situation became
# more severe (a worse rule, a grown count, a reassessment), told at once to the levels reached.
NotificationKind = Literal[
    "opened",
    "assessed",
    "upgraded",
    "escalated",
    "reminder",
    "summary",
    "resolved",
    "dismissed",
    "still_present",  # acknowledged with an ETA that ran out, the hazard still there
]


class NotificationRequest(BaseModel):
    """One message of one incident step to one configured channel.

    `idempotency_key` names the step (e.g. `<incident id>:escalation-1:<channel>`): one key is
    at most one message, however often the activity is retried. `escalation_level` counts from
    0 (the first notification). `console_url` is where the message's acknowledge link points
    ("" when no console is configured). `situation` names what was seen (the rule or family).
    `title` is ignored: a channel titles each message by its `kind`, in `language`; the field
    stays so that requests already in workflow histories still validate."""

    idempotency_key: str = Field(min_length=1, max_length=300)
    channel: str
    kind: NotificationKind
    incident_id: str
    site_id: str
    site_name: str = ""
    camera_id: str
    severity: RiskLevel
    state: str
    escalation_level: int = Field(default=0, ge=0)
    title: str = ""
    situation: str = ""
    summary: str = ""
    hazards: list[str] = Field(default_factory=list)
    recommended_actions: list[str] = Field(default_factory=list)
    opened_at: datetime
    console_url: str = ""
    language: Language = "en"
    assessment_pending: bool = Field(
        default=False, description="sent before the LLM answered: the detector's facts only"
    )
    detected: str = Field(default="", description="what the detector saw, e.g. 'fall: 1 person'")
    detected_count: int = Field(
        default=0, ge=0, description="how many of `situation` the detector saw (0: see detected)"
    )
    timezone: str = Field(default="UTC", description="the site's IANA zone: times are shown in it")


class NotificationResult(BaseModel):
    """`sent` now, or `already_sent` (the idempotency key was sent before); `detail` is the
    vendor's message id or answer, never a secret. `uncertain`: an earlier attempt of this key
    died between sending and recording its outcome, so the message may or may not have
    arrived; it is not sent again (at most one message per key)."""

    channel: str
    status: Literal["sent", "already_sent"]
    detail: str = ""
    uncertain: bool = False
