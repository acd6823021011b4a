"""Reading the LLM's reply (pure, no I/O): find the one JSON object that is a risk assessment,
then read it leniently where its meaning is unambiguous and strictly where it is not.

Finding (`find_objects`): every `{` of the reply is tried with `json.JSONDecoder.raw_decode`,
so code fences of any case and language tag, prose before and after and whitespace or a BOM
around the object do not matter. Reasoning blocks (`<think>...</think>`, `<thinking>`,
`<reasoning>`; or everything up to a lone closing tag) are dropped first: drafts there are not
the answer. An object whose only field holds the assessment (`{"assessment": {...}}`, or the
object as a JSON string) is unwrapped, and so is a reply that is one JSON string. Only when no
object with a `risk_level` turns up is the reply read again with full-width JSON punctuation
(`｛｝［］：，“”＂`, which Qwen models sometimes emit) made ASCII and trailing commas dropped.

Choosing (`parse_answer`): the objects that read as valid assessments decide. One (or the
same one repeated) is the answer; two different ones are ambiguous and malformed.

Reading (`read_answer`), the field names as asked, or in camelCase / any case / with spaces
or hyphens (the same field twice with different values is malformed):
- `risk_level`: the `LEVEL_WORDS` table, in any case, with surrounding spaces and an optional
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
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from riskflow.models import MAX_ANSWER_ITEMS, MAX_SUMMARY_CHARS, RiskAnswer, RiskLevel

LEVEL_WORDS: dict[str, RiskLevel] = {
    **dict.fromkeys(("none", "no", "无", "没有", "无风险"), RiskLevel.NONE),
    **dict.fromkeys(("low", "低", "较低", "低度"), RiskLevel.LOW),
    **dict.fromkeys(("medium", "moderate", "中", "中等", "中度"), RiskLevel.MEDIUM),
    **dict.fromkeys(("high", "高", "较高", "高度"), RiskLevel.HIGH),
    **dict.fromkeys(("critical", "extreme", "严重", "极高", "危急", "极端"), RiskLevel.CRITICAL),
}
_LEVEL_SUFFIX = re.compile(r"(?:[\s_-]*(?:risk|level))+$|风险$")
_REASONING = re.compile(
    r"<(think|thinking|reasoning)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)
_LONE_CLOSE = re.compile(r"</(?:think|thinking|reasoning)\s*>", re.IGNORECASE)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_FULL_WIDTH = {"｛": "{", "｝": "}", "［": "[", "］": "]", "：": ":", "，": ","}
_CLOSING_QUOTES = {'"': '"', "“": '"”', "”": '"”', "＂": '"＂'}  # opener -> what closes it


class _Object(dict[str, Any]):
    """A decoded JSON object that remembers keys given twice with different values."""

    conflicts: set[str]

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _Object:
        obj = cls()
        obj.conflicts = set()
        for key, value in pairs:
            if key in obj and obj[key] != value:
                obj.conflicts.add(key)
            obj[key] = value
        return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_Object.of)


def parse_answer(text: str) -> RiskAnswer:
    """The one risk assessment in the LLM's reply `text`.

    Raises ValueError saying what is wrong: "not JSON: ..." (no JSON object found),
    "ambiguous: ..." (different valid assessments), "wrong shape: ..." (the fields'
    problems), "no risk assessment: ..." (objects, none with a risk_level).
    """
    objects, why = find_objects(text)
    if not objects:
        raise ValueError(f"not JSON: no JSON object in the reply ({why})")
    answers: list[RiskAnswer] = []
    problems: list[str] = []
    for obj in objects:
        try:
            answer = read_answer(obj)
        except ValueError as exc:
            if "risk_level" in _field_names(obj):
                problems.append(str(exc))
            continue
        if not any(_same(answer, other) for other in answers):
            answers.append(answer)
    if len(answers) > 1:
        raise ValueError(f"ambiguous: {len(answers)} different assessments in the reply")
    if answers:
        return answers[0]
    if problems:
        raise ValueError(f"wrong shape: {problems[0]}")
    raise ValueError(f"no risk assessment: {len(objects)} JSON object(s), none with risk_level")


def _same(one: RiskAnswer, other: RiskAnswer) -> bool:
    """The same assessment, whatever was adjusted to read it."""
    return one.model_dump(exclude={"adjustments"}) == other.model_dump(exclude={"adjustments"})


def find_objects(text: str) -> tuple[list[dict[str, Any]], str]:
    """The JSON objects the reply offers as answers (see the module's docstring), and if
    there are none, why (the decoder's first error)."""
    body = _REASONING.sub(" ", text.replace("\ufeff", ""))
    lone_closes = list(_LONE_CLOSE.finditer(body))
    if lone_closes:
        body = body[lone_closes[-1].end() :]
    objects, why = _candidates(body)
    if not any("risk_level" in _field_names(o) for o in objects):
        ascii_body = _ascii_structure(body)
        if ascii_body != body:
            objects += _candidates(ascii_body)[0]
    return objects, why


def _candidates(body: str, depth: int = 0) -> tuple[list[dict[str, Any]], str]:
    """Top-level objects in `body`, unwrapped; else objects inside a JSON string literal."""
    objects, why = _scan(body)
    found: list[dict[str, Any]] = []
    for obj in objects:
        found.append(obj)
        if "risk_level" in _field_names(obj) or len(obj) != 1 or depth > 2:
            continue
        (inner,) = obj.values()
        if isinstance(inner, dict):
            found.append(inner)
        elif isinstance(inner, str):
            found += _candidates(inner, depth + 1)[0]
    if not found and depth <= 2:
        for literal in _string_literals(body):
            found += _candidates(literal, depth + 1)[0]
    return found, why


def _scan(body: str) -> tuple[list[dict[str, Any]], str]:
    objects: list[dict[str, Any]] = []
    why = "no '{' in it"
    start = body.find("{")
    while start != -1:
        try:
            value, end = _DECODER.raw_decode(body, start)
        except (json.JSONDecodeError, RecursionError) as exc:
            if not objects and why == "no '{' in it":
                why = _decode_error(exc)
            start = body.find("{", start + 1)
            continue
        objects.append(value)
        start = body.find("{", end)
    return objects, why


def _decode_error(exc: json.JSONDecodeError | RecursionError) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return f"{exc.msg} at char {exc.pos}"


def _string_literals(body: str) -> list[str]:
    """JSON string literals in `body` that hold a '{' (a reply that is an encoded object)."""
    literals: list[str] = []
    start = body.find('"')
    while start != -1:
        try:
            value, end = _DECODER.raw_decode(body, start)
        except (json.JSONDecodeError, RecursionError):
            start = body.find('"', start + 1)
            continue
        if isinstance(value, str) and "{" in value:
            literals.append(value)
        start = body.find('"', end)
    return literals


def _ascii_structure(body: str) -> str:
    """`body` with full-width JSON punctuation outside strings made ASCII and trailing commas
    before '}' or ']' dropped; text inside strings is kept."""
    out: list[str] = []
    closers = ""  # the quotes that end the string we are in ("" = outside strings)
    escaped = False
    for ch in body:
        if closers:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch in closers:
                closers, ch = "", '"'
            out.append(ch)
            continue
        if ch in _CLOSING_QUOTES:
            closers, ch = _CLOSING_QUOTES[ch], '"'
        ch = _FULL_WIDTH.get(ch, ch)
        if ch in "}]":
            last = len(out) - 1
            while last >= 0 and out[last].isspace():
                last -= 1
            if last >= 0 and out[last] == ",":
                del out[last]
        out.append(ch)
    return "".join(out)


def _field_name(key: str) -> str:
    return re.sub(r"[\s-]+", "_", _CAMEL.sub("_", key.strip())).lower()


def _field_names(obj: dict[str, Any]) -> set[str]:
    return {_field_name(key) for key in obj}


def read_answer(obj: dict[str, Any]) -> RiskAnswer:
    """One decoded object as a RiskAnswer; ValueError names every field that is wrong."""
    fields: dict[str, Any] = {}
    problems: list[str] = []
    conflicts: set[str] = getattr(obj, "conflicts", set())
    for key, value in obj.items():
        name = _field_name(key)
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
        raise ValueError(f"expected one of {[v.value for v in RiskLevel]}, got {value!r}")
    word = _LEVEL_SUFFIX.sub("", " ".join(value.split()).casefold()).strip()
    if word not in LEVEL_WORDS:
        raise ValueError(f"unknown risk level {value!r}")
    return LEVEL_WORDS[word]


def _score(value: Any, adjustments: list[str]) -> int:
    number: int | float
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number 0-100, got {value!r}")
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        if not _NUMBER.fullmatch(text):
            raise ValueError(f"expected a number 0-100, got {value!r}")
        number = float(text)
    else:
        number = value
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    if 0 < number < 1:
        raise ValueError(f"{value!r} is between 0 and 1: a 0-1 scale or 0-100? ambiguous")
    rounded = math.floor(number + 0.5) if isinstance(number, float) else number
    if rounded != number:
        adjustments.append(f"risk_score {value!r} rounded to {rounded}")
    clamped = min(100, max(0, rounded))
    if clamped != rounded:
        adjustments.append(f"risk_score {rounded} clamped to {clamped}")
    return clamped


def _summary(value: Any, adjustments: list[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
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
        raise ValueError(f"expected a list of strings, got {value!r}")
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
