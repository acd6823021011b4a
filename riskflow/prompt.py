"""Pure prompt building (no I/O) and `parse_answer` (from `riskflow.answers`): for activities."""

from __future__ import annotations

import json
from collections import Counter

from riskflow.answers import parse_answer
from riskflow.events import DetectionEvent
from riskflow.models import RiskLevel

__all__ = ["REPAIR_PROMPT", "SYSTEM_PROMPT", "class_counts", "parse_answer", "user_prompt"]

DETECTIONS_MARKER = "Detections (JSON):"

SYSTEM_PROMPT = (
    "You are a safety officer watching camera feeds. Assess the risk of the situation "
    "described by the object detections. Answer with one JSON object only, with the keys: "
    '"risk_level" (one of ' + ", ".join(f'"{level.value}"' for level in RiskLevel) + "), "
    '"risk_score" (integer 0-100), "summary" (one or two sentences), '
    '"hazards" (list of strings), "recommended_actions" (list of strings).'
)

REPAIR_PROMPT = (
    "Your previous answer could not be read as one risk assessment ({error}). "
    "Answer again with one JSON object only, with exactly the keys risk_level, risk_score, "
    "summary, hazards, recommended_actions. Previous answer:\n{previous}"
)


def class_counts(event: DetectionEvent) -> dict[str, int]:
    return dict(sorted(Counter(d.class_name for d in event.detections).items()))


def user_prompt(event: DetectionEvent, situation: str, history: list[str]) -> str:
    top = sorted(event.detections, key=lambda d: d.confidence, reverse=True)[:20]
    lines = [
        f"Camera: {event.camera_id}",
        f"Captured at: {event.captured_at.isoformat()}",
        f"Frame: {event.frame_id} ({event.image.width}x{event.image.height}), "
        f"model {event.model_name}",
        f"Situation flagged: {situation}",
        f"{DETECTIONS_MARKER} {json.dumps(class_counts(event), sort_keys=True)}",
        "Strongest detections:",
        *(
            f"- {d.class_name} conf={d.confidence:.2f} box=({d.bbox.x1:.0f},{d.bbox.y1:.0f},"
            f"{d.bbox.x2:.0f},{d.bbox.y2:.0f})" + (f" track={d.track_id}" if d.track_id else "")
            for d in top
        ),
    ]
    if history:
        lines += ["Recent assessments of this camera (newest first):", *(f"- {h}" for h in history)]
    lines.append("Respond in JSON.")
    return "\n".join(lines)
