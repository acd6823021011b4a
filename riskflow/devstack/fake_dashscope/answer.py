"""The deterministic answer: a risk assessment computed from the detections in the prompt."""

from __future__ import annotations

import json
import re

from riskflow.prompt import DETECTIONS_MARKER

_MARKER_RE = re.compile(re.escape(DETECTIONS_MARKER) + r"\s*(\{.*?\})\s*$", re.MULTILINE)


def prompt_text(messages: list[dict[str, object]]) -> str:
    """All text of a DashScope `input.messages` list (plain or multimodal content)."""
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [
                str(item["text"]) for item in content if isinstance(item, dict) and "text" in item
            ]
    return "\n".join(parts)


def class_counts(text: str) -> dict[str, int]:
    match = _MARKER_RE.search(text)
    if match is None:
        return {}
    try:
        counts = json.loads(match.group(1))
    except json.JSONDecodeError:
        return {}
    if not isinstance(counts, dict):
        return {}
    return {str(k): int(v) for k, v in counts.items() if isinstance(v, int | float)}


def assess(counts: dict[str, int]) -> dict[str, object]:
    falls = counts.get("Fall", 0) + counts.get("fall", 0)
    people = counts.get("person", 0) + counts.get("Normal", 0) + falls
    if falls >= 2:
        level, score = "critical", 95
    elif falls == 1:
        level, score = "high", 80
    elif people >= 5:
        level, score = "medium", 50
    elif people >= 1:
        level, score = "low", 15
    else:
        level, score = "none", 0
    hazards = [f"{falls} person(s) down"] if falls else []
    if people >= 5:
        hazards.append(f"crowding: {people} people")
    actions = ["dispatch staff to check on the fallen person"] if falls else []
    if not actions:
        actions = ["keep monitoring"] if people else []
    return {
        "risk_level": level,
        "risk_score": score,
        "summary": f"{people} people in view, {falls} fallen.",
        "hazards": hazards,
        "recommended_actions": actions,
    }


def answer_for(messages: list[dict[str, object]]) -> str:
    return json.dumps(assess(class_counts(prompt_text(messages))), ensure_ascii=False)
