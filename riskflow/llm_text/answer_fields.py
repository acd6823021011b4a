"""Reading one decoded JSON object as a RiskAnswer (pure, no I/O): leniently where the
meaning is unambiguous, strictly where it is not (`riskflow.llm_text.answers` finds the object).

Reading (`read_answer`), the field names as asked, or in camelCase / any case / with spaces
or hyphens (the same field twice with different values is malformed):
- `risk_level`: the `LEVEL_WORDS` table, in any case or width (NFKC), with spaces and an optional
  "risk" / "风险" / "level" suffix. Anything else ("very high", "severe", a number) is malformed.
- `risk_score`: an integer, a float or a numeric string (optionally ending in "%"), rounded
  half up and clamped to 0-100; each change is recorded in `RiskAnswer.adjustments`. Booleans,
  null, NaN and infinities are malformed, and so is a fraction strictly between 0 and 1 (a 0-1
  scale or a 0-100 one? ambiguous).
- `summary`: required, a non-empty string (no summary, no alert text: malformed); cut to
  2000 characters (recorded).
- `hazards`, `recommended_actions`: a list; a lone string or object is a one-item list; null
  items and empty strings are dropped; an object item becomes "key: value, key: value"; a
  number item its text; a boolean item is malformed; more than 20 items are cut (recorded).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from riskflow.contracts.assessment import MAX_ANSWER_ITEMS, MAX_SUMMARY_CHARS, RiskAnswer
from riskflow.levels import RiskLevel

LEVEL_WORDS: dict[str, RiskLevel] = {
    **dict.fromkeys(("none", "no", "无", "没有", "无风险"), RiskLevel.NONE),
    **dict.fromkeys(("low", "低", "较低", "低度"), RiskLevel.LOW),
    **dict.fromkeys(("medium", "moderate", "中", "中等", "中度"), RiskLevel.MEDIUM),
    **dict.fromkeys(("high", "高", "较高", "高度"), RiskLevel.HIGH),
    **dict.fromkeys(("critical", "extreme", "严重", "极高", "危急", "极端"), RiskLevel.CRITICAL),
}
_LEVEL_SUFFIX = re.compile(r"(?:[\s_-]*(?:risk|level))+$|风险$")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def field_name(key: str) -> str:
    """`riskLevel`, `Risk Level`, `risk-level`, `RISK_LEVEL` -> `risk_level`."""
    return re.sub(r"[\s-]+", "_", _CAMEL.sub("_", key.strip())).lower()


def field_names(obj: dict[str, Any]) -> set[str]:
    """The object's keys as field names (camelCase, spaces, hyphens and case made snake_case)."""
    return {field_name(key) for key in obj}


def read_answer(obj: dict[str, Any]) -> RiskAnswer:
    """One decoded object as a RiskAnswer; ValueError names every field that is wrong.

    Keys the decoder saw twice with different values are in `obj.conflicts` (a set, when
    `riskflow.llm_text.answers` decoded it); any other field the object carries, `adjustments`
    included, is ignored."""
    fields: dict[str, Any] = {}
    problems: list[str] = []
    conflicts: set[str] = getattr(obj, "conflicts", set())
    for key, value in obj.items():
        name = field_name(key)
        if key in conflicts or (name in fields and fields[name] != value):
            problems.append(f"{name}: given twice with different values")
        fields[name] = value
    adjustments: list[str] = []
    readers: dict[str, Callable[[Any], Any]] = {
        "risk_level": _level,
        "risk_score": lambda value: _score(value, adjustments),
        "summary": lambda value: _summary(value, adjustments),
        "hazards": lambda value: _items("hazards", value, adjustments),
        "recommended_actions": lambda value: _items("recommended_actions", value, adjustments),
    }
    clean: dict[str, Any] = {}
    for name, reader in readers.items():
        try:
            clean[name] = reader(fields.get(name))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise ValueError("; ".join(dict.fromkeys(problems)))
    try:
        return RiskAnswer.model_validate({**clean, "adjustments": adjustments})
    except ValidationError as exc:  # not expected: the readers produce the model's shape
        raise ValueError(str(exc)) from None


def _level(value: Any) -> RiskLevel:
    if not isinstance(value, str):
        raise ValueError(f"expected one of {[v.value for v in RiskLevel]}, got {_shown(value)}")
    plain = " ".join(unicodedata.normalize("NFKC", value).split()).casefold()
    word = _LEVEL_SUFFIX.sub("", plain).strip()
    if word not in LEVEL_WORDS:
        raise ValueError(f"unknown risk level {_shown(value)}")
    return LEVEL_WORDS[word]


def _score(value: Any, adjustments: list[str]) -> int:
    number: int | float
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number 0-100, got {_shown(value)}")
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        if not _NUMBER.fullmatch(text):
            raise ValueError(f"expected a number 0-100, got {_shown(value)}")
        number = float(text)
    else:
        number = value
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {_shown(value)}")
    if 0 < number < 1:
        raise ValueError(f"{_shown(value)} is between 0 and 1: a 0-1 scale or 0-100? ambiguous")
    rounded = math.floor(number + 0.5) if isinstance(number, float) else number
    if rounded != number:
        adjustments.append(f"risk_score {_shown(value)} rounded to {rounded}")
    clamped = min(100, max(0, rounded))
    if clamped != rounded:
        adjustments.append(f"risk_score {_shown(rounded)} clamped to {clamped}")
    return clamped


def _summary(value: Any, adjustments: list[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {_shown(value)}")
    text = value.strip()
    if len(text) > MAX_SUMMARY_CHARS:
        adjustments.append(f"summary cut from {len(text)} to {MAX_SUMMARY_CHARS} characters")
        text = text[:MAX_SUMMARY_CHARS]
    return text


def _items(name: str, value: Any, adjustments: list[str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {_shown(value)}")
    items: list[str] = []
    for item in value:
        if isinstance(item, bool):
            raise ValueError(f"a boolean is not a {name} item: {item!r}")
        text = _readable(item)
        if text:
            items.append(text)
    if len(items) > MAX_ANSWER_ITEMS:
        adjustments.append(f"{name} cut from {len(items)} to {MAX_ANSWER_ITEMS} items")
        items = items[:MAX_ANSWER_ITEMS]
    return items


def _shown(value: Any) -> str:
    """`value` for an error message: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _readable(value: Any) -> str:
    """A JSON value as text for a person: objects as "key: value, ...", lists as "a; b"."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        parts = ((str(k).strip(), _readable(v)) for k, v in value.items())
        return ", ".join(f"{k}: {v}" for k, v in parts if v)
    if isinstance(value, list):
        return "; ".join(text for text in map(_readable, value) if text)
    return json.dumps(value)
