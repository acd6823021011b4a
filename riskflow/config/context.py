"""What the assessment prompt is told about a site and its cameras, and the site's risk rubric.

The `context` key of a site in `config/sites.yaml` (`riskflow.config.sites.SiteConfig.context`):

```yaml
sites:
  - id: plant-a
    language: zh-CN
    cameras: ["dock-1"]
    context:
      watches: a warehouse; forklifts and pedestrians share the aisles
      hazards: [forklift traffic, wet floor near the cold store]
      working_hours: "Mon-Sat 07:00-19:00"
      classes: {Normal: a person standing or walking, Fall: a person lying on the ground}
      zones: {dock_edge: the loading dock edge, a 1.2 m drop}
      instructions: A person lying in the rest area during breaks is not a fall.
      rubric:                         # optional; the shipped DEFAULT_RUBRIC otherwise
        version: plant-a-2026-11      # optional; a content hash otherwise
        levels: {none: ..., low: ..., medium: ..., high: ..., critical: ...}
      cameras:                        # per camera, keyed by camera id; adds to the site's
        dock-1: {watches: loading dock 3, hazards: [reversing trucks]}
```

Unknown keys are an error naming the file and field (`extra="forbid"`). Zone polygons stay
where the bridge reads them (cameras.yaml / significance); `zones` here says what they mean.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from riskflow.levels import RiskLevel

MAX_TEXT = 2000


class Rubric(BaseModel):
    """What each risk level means at a site: one line per level, all five required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(default="", max_length=64, description="empty: a content hash")
    levels: dict[RiskLevel, str]

    @field_validator("levels")
    @classmethod
    def _all_levels(cls, levels: dict[RiskLevel, str]) -> dict[RiskLevel, str]:
        missing = [level.value for level in RiskLevel if not levels.get(level, "").strip()]
        if missing:
            raise ValueError(f"the rubric must describe every level; missing: {missing}")
        return {level: levels[level].strip()[:MAX_TEXT] for level in RiskLevel}

    @property
    def effective_version(self) -> str:
        """`version` when configured, else `sha256:` and 12 hex digits of the level texts."""
        if self.version:
            return self.version
        text = json.dumps({k.value: v for k, v in self.levels.items()}, ensure_ascii=False)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


DEFAULT_RUBRIC = Rubric(
    version="default-1",
    levels={
        RiskLevel.NONE: "nobody in danger; nothing unusual in view",
        RiskLevel.LOW: "people in view behaving normally; no hazard beyond the usual",
        RiskLevel.MEDIUM: "a situation to watch: crowding, a person in a hazard zone, "
        "unusual activity; no one hurt yet",
        RiskLevel.HIGH: "someone is probably hurt or in immediate danger (one person down, "
        "a person in a forbidden zone); staff must check now",
        RiskLevel.CRITICAL: "several people hurt or in danger, or a life-threatening event; "
        "escalate at once",
    },
)


class CameraContext(BaseModel):
    """Context of one camera; each field adds to (lists) or replaces (text) the site's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    watches: str = Field(default="", max_length=MAX_TEXT, description="what the camera sees")
    hazards: list[str] = Field(default_factory=list, max_length=20)
    working_hours: str = Field(default="", max_length=200)
    classes: dict[str, str] = Field(default_factory=dict, description="detector class -> meaning")
    zones: dict[str, str] = Field(default_factory=dict, description="zone name -> meaning")
    instructions: str = Field(default="", max_length=MAX_TEXT)


class SiteContext(CameraContext):
    """A site's context, its rubric, and per-camera context keyed by camera id."""

    rubric: Rubric = DEFAULT_RUBRIC
    cameras: dict[str, CameraContext] = Field(default_factory=dict)

    @field_validator("cameras", mode="before")
    @classmethod
    def _string_ids(cls, value: object) -> object:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _no_blank_names(self) -> SiteContext:
        for name in [*self.classes, *self.zones]:
            if not name.strip():
                raise ValueError("class and zone names must not be blank")
        return self

    def for_camera(self, camera_id: str) -> CameraContext:
        """The site's context with the camera's own merged in (camera text wins, lists add)."""
        own = self.cameras.get(camera_id)
        if own is None:
            return CameraContext(**self.model_dump(include=set(CameraContext.model_fields)))
        return CameraContext(
            watches=own.watches or self.watches,
            hazards=[*self.hazards, *(h for h in own.hazards if h not in self.hazards)],
            working_hours=own.working_hours or self.working_hours,
            classes={**self.classes, **own.classes},
            zones={**self.zones, **own.zones},
            instructions="\n".join(t for t in (self.instructions, own.instructions) if t),
        )


DEFAULT_CONTEXT = SiteContext()


def content_version(value: BaseModel) -> str:
    """`sha256:` and 12 hex digits of a model's JSON: a version for configured text."""
    text = value.model_dump_json()
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


PromptVersion = Literal["v1", "v2"]
