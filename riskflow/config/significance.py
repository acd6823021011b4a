"""Which detections are significant: rules, zones and debounce, per camera with defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SituationRule(BaseModel):
    """A named situation: `min_count` detections of `classes` at `min_confidence` or more."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    classes: list[str] = Field(min_length=1)
    min_count: int = Field(default=1, gt=0)
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    severity: int = Field(default=1, ge=0, le=10, description="higher wins; never debounced")


class Zone(BaseModel):
    """A polygon in pixels; a detection is inside when its bottom-centre point is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    points: list[tuple[float, float]] = Field(min_length=3)


class CameraRules(BaseModel):
    """Overrides for one camera; unset fields take the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    debounce_seconds: float | None = Field(default=None, gt=0)
    rules: list[SituationRule] | None = None
    zones: list[Zone] | None = None


DEFAULT_RULES = [
    SituationRule(name="fall", classes=["Fall", "fall"], severity=5),
    SituationRule(name="crowd", classes=["person", "Normal"], min_count=5, severity=2),
    SituationRule(name="person", classes=["person", "Normal"], min_count=1, severity=1),
]


class SignificanceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    debounce_seconds: float = Field(default=30.0, gt=0)
    rules: list[SituationRule] = Field(default_factory=lambda: list(DEFAULT_RULES))
    zones: list[Zone] = Field(default_factory=list)
    cameras: dict[str, CameraRules] = Field(default_factory=dict)

    @field_validator("cameras", mode="before")
    @classmethod
    def _string_ids(cls, value: object) -> object:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value
