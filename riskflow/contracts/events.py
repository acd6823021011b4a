"""The detection message on `detection-results`: the contract between the edge and the bridge.

`schemas/detection_event.schema.json` is generated from `DetectionEvent` (`riskflow schema`)
for users of other languages; a test keeps it in step with this module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from riskflow.redact import redact_url


class BBox(BaseModel):
    """A box in pixels: top-left (x1, y1), bottom-right (x2, y2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x1: float = Field(ge=0)
    y1: float = Field(ge=0)
    x2: float = Field(ge=0)
    y2: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> BBox:
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError("bbox corners must satisfy x1 <= x2 and y1 <= y2")
        return self

    def bottom_center(self) -> tuple[float, float]:
        """Where an object stands: the point zones are tested against."""
        return ((self.x1 + self.x2) / 2.0, self.y2)


class Detection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    class_name: str = Field(min_length=1, max_length=64)
    class_id: int = Field(ge=0)
    confidence: float = Field(ge=0.0, le=1.0)
    bbox: BBox
    track_id: int | None = None


class ImageSize(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(gt=0)
    height: int = Field(gt=0)


class SnapshotRef(BaseModel):
    """Where a JPEG of the frame can be fetched (for the vision model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Literal["redis", "url"]
    ref: str = Field(min_length=1, max_length=512)
    content_type: str = "image/jpeg"


class DetectionEvent(BaseModel):
    """One processed frame of one camera. Kafka key: the camera id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    camera_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    frame_id: int = Field(ge=0, description="Sequence number of the frame within its source")
    captured_at: datetime = Field(description="Capture time, timezone-aware")
    image: ImageSize
    model_name: str = Field(min_length=1, max_length=128)
    model_version: str = Field(default="", max_length=64)
    detections: list[Detection] = Field(default_factory=list, max_length=1000)
    snapshot: SnapshotRef | None = None
    source: str = Field(default="", max_length=512, description="Source label, never credentials")

    @field_validator("source")
    @classmethod
    def _no_credentials(cls, source: str) -> str:
        """Whoever publishes (our edge or another), the label keeps no credentials."""
        return redact_url(source)

    @model_validator(mode="after")
    def _aware(self) -> DetectionEvent:
        if self.captured_at.tzinfo is None:
            raise ValueError("captured_at must carry a timezone (e.g. 2026-01-01T00:00:00Z)")
        return self
