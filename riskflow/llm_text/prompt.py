"""Pure prompt building (no I/O) and `parse_answer` (from `riskflow.llm_text.answers`): for
activities.

Two templates, each with a version recorded on every assessment (`Provenance`):
- `v1`: the generic prompt (class counts, boxes, recent assessments), kept to compare against;
- `v2` (default): adds the camera's context, the detector's class glossary, the zone each
  detection stands in, the site's rubric and the operators' language.
Both keep the word JSON (DashScope's JSON mode refuses a prompt without it) and the
`DETECTIONS_MARKER` line the local DashScope server reads.
"""

from __future__ import annotations

import json
from collections import Counter
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from riskflow.config.context import (
    DEFAULT_RUBRIC,
    CameraContext,
    PromptVersion,
    Rubric,
    content_version,
)
from riskflow.config.significance import Zone
from riskflow.config.sites import Language, SiteConfig
from riskflow.contracts.assessment import Provenance
from riskflow.contracts.events import Detection, DetectionEvent
from riskflow.levels import RiskLevel
from riskflow.llm_text.answers import parse_answer

__all__ = [
    "PROMPT_VERSION",
    "REPAIR_PROMPT",
    "SYSTEM_PROMPT",
    "PromptSpec",
    "class_counts",
    "parse_answer",
    "prompt_spec",
    "system_prompt",
    "user_prompt",
]

DETECTIONS_MARKER = "Detections (JSON):"
LANGUAGE_MARKER = "Answer language:"
PROMPT_VERSION: PromptVersion = "v2"

# What the bundled fall model's classes (and COCO's person) mean, unless a site says otherwise.
DEFAULT_CLASSES = {
    "Normal": "a person standing, sitting or walking (bundled fall model)",
    "Fall": "a person fallen or lying on the ground (bundled fall model)",
    "person": "a person (COCO detector)",
}
LANGUAGE_NAMES = {"zh-CN": "Simplified Chinese (简体中文)", "en": "English"}

_KEYS = (
    '"risk_level" (one of ' + ", ".join(f'"{level.value}"' for level in RiskLevel) + "), "
    '"risk_score" (integer 0-100), "summary" (one or two sentences), '
    '"hazards" (list of strings), "recommended_actions" (list of strings).'
)

SYSTEM_PROMPT = (
    "You are a safety officer watching camera feeds. Assess the risk of the situation "
    "described by the object detections. Answer with one JSON object only, with the keys: " + _KEYS
)

REPAIR_PROMPT = (
    "Your previous answer could not be read as one risk assessment ({error}). "
    "Answer again with one JSON object only, with exactly the keys risk_level, risk_score, "
    "summary, hazards, recommended_actions. Previous answer:\n{previous}"
)


class PromptSpec(BaseModel):
    """Everything a prompt is built from besides the event: template version, language,
    the camera's merged context, the rubric and the camera's zone polygons (pixels)."""

    model_config = ConfigDict(frozen=True)

    template: PromptVersion = PROMPT_VERSION
    language: Language = "en"
    site_name: str = ""
    timezone: str = "UTC"
    context: CameraContext = Field(default_factory=CameraContext)
    rubric: Rubric = DEFAULT_RUBRIC
    zones: list[Zone] = Field(default_factory=list)

    def provenance(self, provider: str, model: str, event: DetectionEvent) -> Provenance:
        """The versions this spec stands for, for the assessment record."""
        image_ref = f"{event.snapshot.store}:{event.snapshot.ref}" if event.snapshot else None
        return Provenance(
            prompt_version=self.template,
            rubric_version=self.rubric.effective_version if self.template != "v1" else "",
            context_version=content_version(self.context) if self.template != "v1" else "",
            language=self.language if self.template != "v1" else "",
            provider=provider,
            model=model,
            frame_ids=[event.frame_id],
            image_ref=image_ref,
        )


def prompt_spec(site: SiteConfig, camera_id: str, zones: list[Zone]) -> PromptSpec:
    """The spec of a camera: its site's language and rubric, context merged with the site's."""
    return PromptSpec(
        language=site.language,
        site_name=site.display_name,
        timezone=site.timezone,
        context=site.context.for_camera(camera_id),
        rubric=site.context.rubric,
        zones=zones,
    )


def class_counts(event: DetectionEvent) -> dict[str, int]:
    return dict(sorted(Counter(d.class_name for d in event.detections).items()))


def system_prompt(spec: PromptSpec | None = None) -> str:
    """The system message: role, context, rubric, answer keys and language."""
    if spec is None or spec.template == "v1":
        return SYSTEM_PROMPT
    ctx = spec.context
    lines = [
        "You are a safety officer watching camera feeds. Assess the risk of the situation "
        "described by the object detections, using what you are told about this camera."
    ]
    if ctx.watches:
        lines.append(f"What this camera watches: {ctx.watches}")
    if ctx.hazards:
        lines.append("Known hazards here: " + "; ".join(ctx.hazards))
    if ctx.working_hours:
        lines.append(f"Working hours ({spec.timezone}): {ctx.working_hours}")
    if ctx.zones:
        lines.append("Zones: " + "; ".join(f"{name} = {text}" for name, text in ctx.zones.items()))
    if ctx.instructions:
        lines.append(f"Site instructions: {ctx.instructions}")
    lines.append(f"Risk levels at this site (rubric {spec.rubric.effective_version}):")
    lines += [f'- "{level.value}": {text}' for level, text in spec.rubric.levels.items()]
    lines.append("Answer with one JSON object only, with the keys: " + _KEYS)
    lines.append(
        f"{LANGUAGE_MARKER} {spec.language}. Write summary, hazards and recommended_actions "
        f"in {LANGUAGE_NAMES[spec.language]}; risk_level stays one of the English values above."
    )
    return "\n".join(lines)


def zone_names(detection: Detection, zones: list[Zone]) -> list[str]:
    """The zones whose polygon holds the detection's bottom-centre point (where it stands)."""
    x, y = detection.bbox.bottom_center()
    return [zone.name for zone in zones if _inside(x, y, zone.points)]


def _inside(x: float, y: float, points: list[tuple[float, float]]) -> bool:
    """Ray casting, as the bridge's significance test does."""
    inside = False
    for i, (x1, y1) in enumerate(points):
        x2, y2 = points[(i + 1) % len(points)]
        if (y1 > y) != (y2 > y) and x <= x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _detection_line(d: Detection, zones: list[Zone]) -> str:
    line = (
        f"- {d.class_name} conf={d.confidence:.2f} box=({d.bbox.x1:.0f},{d.bbox.y1:.0f},"
        f"{d.bbox.x2:.0f},{d.bbox.y2:.0f})" + (f" track={d.track_id}" if d.track_id else "")
    )
    names = zone_names(d, zones)
    return line + (f" zone={','.join(names)}" if names else "")


def _context_lines(event: DetectionEvent, spec: PromptSpec) -> list[str]:
    local = event.captured_at.astimezone(ZoneInfo(spec.timezone))
    glossary = {**DEFAULT_CLASSES, **spec.context.classes}
    present = [name for name in class_counts(event) if name in glossary]
    lines = [f"Site: {spec.site_name}"] if spec.site_name else []
    lines.append(f"Local time: {local.strftime('%A %Y-%m-%d %H:%M')} ({spec.timezone})")
    if present:
        lines.append("Classes: " + "; ".join(f"{n} = {glossary[n]}" for n in present))
    return lines


def user_prompt(
    event: DetectionEvent, situation: str, history: list[str], spec: PromptSpec | None = None
) -> str:
    """The user message: the event's detections (and context lines for template v2)."""
    v2 = spec is not None and spec.template != "v1"
    zones = spec.zones if spec is not None and v2 else []
    top = sorted(event.detections, key=lambda d: d.confidence, reverse=True)[:20]
    lines = [
        f"Camera: {event.camera_id}",
        *(_context_lines(event, spec) if spec is not None and v2 else []),
        f"Captured at: {event.captured_at.isoformat()}",
        f"Frame: {event.frame_id} ({event.image.width}x{event.image.height}), "
        f"model {event.model_name}",
        f"Situation flagged: {situation}",
        f"{DETECTIONS_MARKER} {json.dumps(class_counts(event), sort_keys=True)}",
        "Strongest detections:",
        *(_detection_line(d, zones) for d in top),
    ]
    if history:
        lines += ["Recent assessments of this camera (newest first):", *(f"- {h}" for h in history)]
    lines.append("Respond in JSON.")
    return "\n".join(lines)
