"""`llm:` and `aggregate:` in riskflow.yaml, and the bounds an assessment works within
(`AssessmentPolicy`, from settings, fixed in history at start)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from riskflow.config.keys import Provider
from riskflow.levels import RiskLevel


class AssessmentPolicy(BaseModel):
    """Bounds the workflow works within (from settings, fixed in history at start)."""

    max_llm_attempts: int = 6
    max_repairs: int = 2
    max_key_wait_seconds: float = 3600.0
    lease_ttl_seconds: float = 120.0
    llm_timeout_seconds: float = 60.0
    min_key_wait_seconds: float = Field(
        default=0.5, gt=0, description="shortest wait for a key (doubles while keys are full)"
    )
    max_key_poll_seconds: float = Field(
        default=10.0, gt=0, description="longest wait between looks for a key"
    )
    history_event_budget: int = Field(
        default=2000, gt=0, description="continue-as-new above this many history events"
    )


class ProviderModels(BaseModel):
    """The models to ask on one provider's keys (e.g. a vLLM server names its models itself);
    unset: the assessment's own model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text_model: str | None = None
    vision_model: str | None = None


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text_model: str = "qwen-plus"
    vision_model: str = "qwen-vl-plus"
    models: dict[Provider, ProviderModels] = Field(
        default_factory=dict, description="models per provider (riskflow.config.keys.Provider)"
    )
    # The tokens a call reserves against tokens-per-minute limits until its answer reports
    # the real count: prompt characters / chars_per_token + image_tokens per image +
    # output_tokens. Qwen counts about 1-1.5 Chinese characters or 3-4 English ones a token;
    # Qwen-VL an image as up to 1280 tokens at its default resolution.
    chars_per_token: float = Field(default=1.5, gt=0)
    image_tokens: int = Field(default=1280, ge=0)
    output_tokens: int = Field(default=500, ge=0)
    request_timeout_seconds: int = Field(default=30, gt=0)
    max_attempts: int = Field(default=6, gt=0, description="LLM calls per assessment")
    max_repairs: int = Field(default=2, ge=0, description="repair prompts after bad JSON")
    max_key_wait_seconds: float = Field(default=3600.0, gt=0)
    history_context: int = Field(default=5, ge=0, description="recent assessments in prompt")


class AggregateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_min_level: RiskLevel = RiskLevel.HIGH
    alerts_max_len: int = Field(default=100, gt=0)
    history_max_len: int = Field(default=20, gt=0)
    # How long an assessment's marker lives, and how long a retried aggregation is still
    # recognised (it never pushes a second alert or history entry within this window).
    assessment_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    # Per-camera keys (latest, alerts, history) expire this long after their last write.
    camera_keys_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)
