"""Reading the LLM's reply (pure, no I/O): find the one JSON object that is a risk assessment,
then read it leniently where its meaning is unambiguous and strictly where it is not.

Finding (`find_objects`): every `{` of the reply is tried with `json.JSONDecoder.raw_decode`,
so code fences of any case and language tag, prose before and after and whitespace or a BOM
around the object do not matter. Reasoning blocks (`<think>...</think>`, `<thinking>`,
`<reasoning>`; or everything up to a lone closing tag) are dropped first: drafts there are not
the answer. An object whose only field holds the assessment (`{"assessment": {...}}`, or the
object as a JSON string, or a one-item list) is unwrapped, and so is a reply that is one
JSON string (three levels at most). Only when no
object with a `risk_level` turns up is the reply read again with full-width JSON punctuation
(`｛｝［］：，“”＂`, which Qwen models sometimes emit) made ASCII and trailing commas dropped.

Choosing (`parse_answer`): the objects that read as valid assessments decide. One (or the
same one repeated) is the answer; two different ones are ambiguous and malformed.

Reading the object's fields: `riskflow.llm_text.answer_fields`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from riskflow.contracts.assessment import RiskAnswer
from riskflow.llm_text.answer_fields import field_names, read_answer

_REASONING = re.compile(
    r"<(think|thinking|reasoning)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)
_LONE_CLOSE = re.compile(r"</(?:think|thinking|reasoning)\s*>", re.IGNORECASE)
_MAX_DEPTH = 3  # wrappers unwrapped, JSON strings decoded, inside one another
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
            if "risk_level" in field_names(obj):
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
    body = _REASONING.sub(" ", text.lstrip().removeprefix("\ufeff"))
    lone_closes = list(_LONE_CLOSE.finditer(body))
    if lone_closes:
        body = body[lone_closes[-1].end() :]
    objects, why = _candidates(body)
    if not any("risk_level" in field_names(o) for o in objects):
        ascii_body = _ascii_structure(body)
        if ascii_body != body:
            objects += _candidates(ascii_body)[0]
    return objects, why


def _candidates(body: str, depth: int = 0) -> tuple[list[dict[str, Any]], str]:
    """Top-level objects in `body`, unwrapped; else objects inside a JSON string literal."""
    objects, why = _scan(body)
    found = [candidate for obj in objects for candidate in _unwrapped(obj, depth)]
    if not found and depth <= _MAX_DEPTH:
        for literal in _string_literals(body):
            found += _candidates(literal, depth + 1)[0]
    return found, why


def _unwrapped(obj: dict[str, Any], depth: int) -> list[dict[str, Any]]:
    """`obj`, and if its only field holds an object (or a one-object list, or JSON text),
    that object too: `{"assessment": {...}}`, `{"result": "{...}"}`."""
    found = [obj]
    if "risk_level" in field_names(obj) or len(obj) != 1 or depth >= _MAX_DEPTH:
        return found
    (inner,) = obj.values()
    if isinstance(inner, list) and len(inner) == 1:
        (inner,) = inner
    if isinstance(inner, dict):
        found += _unwrapped(inner, depth + 1)
    elif isinstance(inner, str):
        found += _candidates(inner, depth + 1)[0]
    return found


def _scan(body: str) -> tuple[list[dict[str, Any]], str]:
    objects: list[dict[str, Any]] = []
    why = "no '{' in it"
    start = body.find("{")
    while start != -1:
        try:
            value, end = _DECODER.raw_decode(body, start)
        except (ValueError, RecursionError) as exc:  # ValueError: also a number over 4300 digits
            if not objects and why == "no '{' in it":
                why = _decode_error(exc)
            start = body.find("{", start + 1)
            continue
        objects.append(value)
        start = body.find("{", end)
    return objects, why


def _decode_error(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at char {exc.pos}"
    return str(exc)


def _string_literals(body: str) -> list[str]:
    """JSON string literals in `body` that hold a '{' (a reply that is an encoded object)."""
    literals: list[str] = []
    start = body.find('"')
    while start != -1:
        try:
            value, end = _DECODER.raw_decode(body, start)
        except (ValueError, RecursionError):
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
