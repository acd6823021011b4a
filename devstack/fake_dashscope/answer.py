"""The deterministic answer: a risk assessment computed from the detections in the prompt."""

from __future__ import annotations

import json
import re

from riskflow.llm_text.prompt import DETECTIONS_MARKER, LANGUAGE_MARKER

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


IMAGE_TOKENS = 1280  # Qwen-VL: an image at its default resolution (up to 1280 tokens)


def prompt_tokens(messages: list[dict[str, object]]) -> int:
    """The prompt's tokens as this server counts them: 4 characters of text a token, and
    `IMAGE_TOKENS` an image (native `{"image": ...}` or OpenAI `image_url` parts), whatever
    its encoded size, as the real service counts images by resolution."""
    images = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            images += sum(
                1
                for part in content
                if isinstance(part, dict) and ("image" in part or part.get("type") == "image_url")
            )
    return len(prompt_text(messages)) // 4 + images * IMAGE_TOKENS


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


def language(text: str) -> str:
    """The language the prompt asks for (`LANGUAGE_MARKER`), `en` when it names none."""
    match = re.search(re.escape(LANGUAGE_MARKER) + r"\s*([A-Za-z-]+)", text)
    return match.group(1) if match else "en"


def _in_chinese(answer: dict[str, object], people: int, falls: int) -> dict[str, object]:
    hazards = [f"{falls} 人倒地"] if falls else []
    if people >= 5:
        hazards.append(f"人员聚集：{people} 人")
    actions = ["立即派人查看倒地人员"] if falls else (["继续监控"] if people else [])
    return {
        **answer,
        "summary": f"画面中 {people} 人，其中 {falls} 人倒地。",
        "hazards": hazards,
        "recommended_actions": actions,
    }


def assess(counts: dict[str, int], lang: str = "en") -> dict[str, object]:
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
    answer: dict[str, object] = {
        "risk_level": level,
        "risk_score": score,
        "summary": f"{people} people in view, {falls} fallen.",
        "hazards": hazards,
        "recommended_actions": actions,
    }
    return _in_chinese(answer, people, falls) if lang == "zh-CN" else answer


def answer_for(messages: list[dict[str, object]]) -> str:
    text = prompt_text(messages)
    return json.dumps(assess(class_counts(text), language(text)), ensure_ascii=False)
