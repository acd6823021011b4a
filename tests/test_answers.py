"""Reading the LLM's reply: every reply that carries one valid assessment is read; a reply
whose meaning is ambiguous is malformed. Pure logic: unit and property
tests (the same shapes through a real worker and the local DashScope server are in
tests/test_workflow_answers.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskflow.levels import RiskLevel
from riskflow.llm_text.answer_fields import LEVEL_WORDS, field_names
from riskflow.llm_text.answers import parse_answer

BODY = {
    "risk_level": "high",
    "risk_score": 80,
    "summary": "A person is down in aisle 3.",
    "hazards": ["person down"],
    "recommended_actions": ["send staff"],
}
TEXT = json.dumps(BODY)


def _with(**changes: Any) -> str:
    return json.dumps({**BODY, **changes}, ensure_ascii=False)


# --- the issue's examples ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        f"```JSON\n{TEXT}\n```",  # upper-case fence
        f"Here is the assessment:\n```json\n{TEXT}\n```",  # prose before a fence
        _with(risk_level="High"),
    ],
)
def test_issue_examples_are_read(reply: str) -> None:
    answer = parse_answer(reply)
    assert (answer.risk_level, answer.risk_score, answer.adjustments) == (RiskLevel.HIGH, 80, [])


def test_float_score_is_rounded_and_the_rounding_recorded() -> None:
    answer = parse_answer(_with(risk_score=80.5))
    assert answer.risk_score == 81 and answer.adjustments == ["risk_score 80.5 rounded to 81"]


def test_boolean_score_is_malformed_not_one() -> None:
    with pytest.raises(ValueError, match="risk_score: expected a number 0-100, got True"):
        parse_answer(_with(risk_score=True))


# --- other members of the kind: where the object is -----------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        f"~~~\n{TEXT}\n~~~",  # another fence
        f"```javascript {TEXT} ``` Let me know if you need more.",  # tag, prose after
        f"\ufeff  \n{TEXT}\n\n",  # BOM and whitespace
        f"<think>The fall looks bad. Draft: {_with(risk_level='low')}</think>\n{TEXT}",
        f"<THINKING>\n{{not json}}\n</THINKING>```json\n{TEXT}```",
        f"...so the worker is down.\n</think>\n\n{TEXT}",  # reasoning whose opening was cut
        f'Detections seen: {{"Fall": 1, "Normal": 1}}.\nAssessment: {TEXT}',  # one validates
        f"{TEXT}\nSame again: ```json\n{json.dumps(BODY, indent=2)}\n```",  # repeated
        json.dumps(TEXT),  # the object as a JSON string
        json.dumps({"assessment": BODY}),  # wrapped in one field
        json.dumps({"result": TEXT}),  # wrapped as a string
        json.dumps({"data": {"assessments": [BODY]}}),  # wrapped twice, in a one-item list
        f"[{TEXT}]",
        f"<answer>{TEXT}</answer>",
        TEXT.replace('"send staff"]', '"send staff",]'),  # trailing comma
        # full-width punctuation outside strings; text inside strings is kept
        '｛"risk_level"："high"，"risk_score"：80，"summary"：“A person is down in aisle 3.”，'
        '"hazards"：［"person down"］，"recommended_actions"：［"send staff"］｝',
    ],
)
def test_the_one_object_is_found_wherever_it_is(reply: str) -> None:
    answer = parse_answer(reply)
    assert answer.model_dump(exclude={"adjustments"}) == {**BODY, "risk_level": RiskLevel.HIGH}


def test_two_different_valid_assessments_are_ambiguous() -> None:
    with pytest.raises(ValueError, match="ambiguous: 2 different assessments"):
        parse_answer(f"First: {TEXT}\nOn reflection: {_with(risk_level='critical')}")


def test_a_key_given_twice_with_different_values_is_malformed() -> None:
    reply = TEXT.replace('"risk_level": "high"', '"risk_level": "high", "risk_level": "low"')
    with pytest.raises(ValueError, match="risk_level: given twice"):
        parse_answer(reply)
    with pytest.raises(ValueError, match="risk_level: given twice"):
        parse_answer(_with(riskLevel="low"))


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ('{"risk_level": "high", "risk_score": ', "not JSON: no JSON object.*Expecting value"),
        ("I cannot assess this image.", r"not JSON: no JSON object in the reply \(no '\{'"),
        ("[1, 2]", "not JSON: no JSON object"),
        ('{"Fall": 1}', "no risk assessment: 1 JSON object"),
        ("{" * 5000, "not JSON: no JSON object"),
        ('{"a":' * 3000, "not JSON: no JSON object"),  # past the decoder's recursion limit
        (f"<think>{TEXT}</think>", "not JSON: no JSON object"),  # only a draft
        (TEXT.replace(": 80", ": " + "9" * 5000), "not JSON: no JSON object.*4300 digits"),
    ],
)
def test_no_assessment_found_says_why(reply: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_answer(reply)


# --- what the fields may look like ----------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (" HIGH ", RiskLevel.HIGH),
        ("High Risk", RiskLevel.HIGH),
        ("high-risk", RiskLevel.HIGH),
        ("Moderate", RiskLevel.MEDIUM),
        ("中等", RiskLevel.MEDIUM),
        ("高风险", RiskLevel.HIGH),
        ("无风险", RiskLevel.NONE),
        ("严重", RiskLevel.CRITICAL),
        ("极高", RiskLevel.CRITICAL),
        ("低", RiskLevel.LOW),
        ("ＨＩＧＨ", RiskLevel.HIGH),  # full-width letters
        ("CRITICAL\u3000", RiskLevel.CRITICAL),  # ideographic space
    ],
)
def test_level_words_in_any_case_and_chinese(level: str, expected: RiskLevel) -> None:
    assert parse_answer(_with(risk_level=level)).risk_level == expected


@pytest.mark.parametrize("level", ["very high", "severe", "apocalyptic", "", 3, None, True])
def test_unknown_or_ambiguous_level_is_malformed(level: object) -> None:
    with pytest.raises(ValueError, match=r"risk_level: (unknown risk level|expected one of)"):
        parse_answer(_with(risk_level=level))


@pytest.mark.parametrize(
    ("score", "expected", "adjustments"),
    [
        ("80", 80, []),
        (" 80 % ", 80, []),
        (80.0, 80, []),
        ("79.5", 80, ["risk_score '79.5' rounded to 80"]),
        (150, 100, ["risk_score 150 clamped to 100"]),
        (-3.4, 0, ["risk_score -3.4 rounded to -3", "risk_score -3 clamped to 0"]),
        (10**30, 100, [f"risk_score {10**30} clamped to 100"]),
        (10**100, 100, [f"risk_score {str(10**100)[:77]}... clamped to 100"]),
        (0, 0, []),
        (1, 1, []),
    ],
)
def test_scores_are_rounded_and_clamped_with_a_record(
    score: object, expected: int, adjustments: list[str]
) -> None:
    answer = parse_answer(_with(risk_score=score))
    assert (answer.risk_score, answer.adjustments) == (expected, adjustments)


@pytest.mark.parametrize(
    "score", [True, False, None, "high", "80/100", "", 0.8, "0.5", [80], {"value": 80}]
)
def test_scores_without_one_meaning_are_malformed(score: object) -> None:
    with pytest.raises(ValueError, match=r"risk_score: (expected a number 0-100|.* ambiguous)"):
        parse_answer(_with(risk_score=score))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_scores_are_malformed(literal: str) -> None:
    with pytest.raises(ValueError, match="risk_score: expected a finite number"):
        parse_answer(TEXT.replace('"risk_score": 80', f'"risk_score": {literal}'))


def test_list_items_become_readable_strings() -> None:
    answer = parse_answer(
        _with(
            hazards=[{"type": "fall", "location": "aisle 3", "note": None}, None, " ", 2, ["a", 1]],
            recommended_actions="call the supervisor",
        )
    )
    assert answer.hazards == ["type: fall, location: aisle 3", "2", "a; 1"]
    assert answer.recommended_actions == ["call the supervisor"]
    assert parse_answer(_with(hazards=None, recommended_actions={"do": "x"})).hazards == []
    long = parse_answer(_with(hazards=[f"h{i}" for i in range(25)]))
    assert len(long.hazards) == 20 and long.adjustments == ["hazards cut from 25 to 20 items"]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"hazards": [True]}, "hazards: a boolean"),
        ({"recommended_actions": 5}, "recommended_actions: expected a list"),
        ({"summary": ""}, "summary: expected a non-empty string"),
        ({"summary": 12}, "summary: expected a non-empty string"),
    ],
)
def test_fields_without_one_meaning_are_malformed(changes: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_answer(_with(**changes))


def test_missing_summary_is_malformed_and_every_problem_is_named() -> None:
    body = {k: v for k, v in BODY.items() if k != "summary"} | {"risk_score": "lots"}
    problems = r"risk_score: .*; summary: expected a non-empty"
    with pytest.raises(ValueError, match=problems) as caught:
        parse_answer(json.dumps(body))
    assert str(caught.value).startswith("wrong shape: ")


def test_field_names_in_other_cases_and_the_models_own_adjustments_ignored() -> None:
    answer = parse_answer(
        json.dumps({"RiskLevel": "low", "Risk Score": 5, "SUMMARY": "ok", "adjustments": ["x"]})
    )
    assert (answer.risk_level, answer.risk_score, answer.summary) == (RiskLevel.LOW, 5, "ok")
    assert answer.adjustments == []


def test_long_summary_is_cut_and_recorded() -> None:
    answer = parse_answer(_with(summary="x" * 2500))
    assert len(answer.summary) == 2000
    assert answer.adjustments == ["summary cut from 2500 to 2000 characters"]


# --- properties: wrappers around valid assessments, and invalid ones ------------------------

PROSE = st.text(
    st.characters(codec="utf-8", exclude_characters='{}"<>`\\', exclude_categories=("Cs", "Cc")),
    max_size=40,
)
OTHER_OBJECTS = st.dictionaries(
    st.text(max_size=8),
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    max_size=3,
).filter(lambda obj: "risk_level" not in field_names(obj))
LEVEL_SPELLINGS = st.sampled_from(sorted(LEVEL_WORDS)).flatmap(
    lambda word: st.tuples(
        st.just(LEVEL_WORDS[word]),
        st.sampled_from([word, word.upper(), word.title(), f"  {word} ", f"{word} risk"]),
    )
)


@st.composite
def scores(draw: st.DrawFn) -> tuple[int, object]:
    """(expected score, how the reply writes it)."""
    value = draw(st.integers(0, 100))
    fraction = value + 0.2 if value else 0.0  # 0.2 alone would be ambiguous (a 0-1 scale?)
    written = draw(
        st.sampled_from([value, float(value), str(value), f"{value}%", f"{value}.0", fraction])
    )
    return value, written


@st.composite
def assessments(draw: st.DrawFn) -> tuple[dict[str, Any], RiskLevel, int]:
    level, level_text = draw(LEVEL_SPELLINGS)
    score, score_written = draw(scores())
    body = {
        "risk_level": level_text,
        "risk_score": score_written,
        "summary": draw(st.text(min_size=1, max_size=60).filter(str.strip)),
        "hazards": draw(st.lists(st.text(max_size=20), max_size=3)),
    }
    return body, level, score


@st.composite
def wrapped(draw: st.DrawFn, body: dict[str, Any]) -> str:
    """`body` as JSON in a reply: fences, prose, reasoning, whitespace, as a model writes."""
    text = json.dumps(
        body,
        indent=draw(st.sampled_from([None, 2, 4])),
        ensure_ascii=draw(st.booleans()),
    )
    if draw(st.booleans()):
        tag = draw(st.sampled_from(["", "json", "JSON", "Json", "jsonc", "javascript"]))
        fence = draw(st.sampled_from(["```", "~~~", "````"]))
        text = f"{fence}{tag}\n{text}\n{fence}"
    text = f"{draw(PROSE)}\n{text}\n{draw(PROSE)}"
    if draw(st.booleans()):  # another object that is not an assessment, before or after
        other = json.dumps(draw(OTHER_OBJECTS))
        text = f"{other} {text}" if draw(st.booleans()) else f"{text} {other}"
    if draw(st.booleans()):
        tag = draw(st.sampled_from(["think", "THINK", "thinking", "reasoning"]))
        draft = json.dumps({**body, "risk_level": "low", "risk_score": 3, "summary": "draft"})
        text = f"<{tag}>{draw(PROSE)} {draft}</{tag}>{text}"
    space = draw(st.sampled_from(["", " ", "\n", "\t\n", "\ufeff", "\r\n"]))
    return f"{space}{text}{space}"


@given(st.data())
def test_any_wrapper_around_a_valid_assessment_is_read(data: st.DataObject) -> None:
    body, level, score = data.draw(assessments())
    answer = parse_answer(data.draw(wrapped(body)))
    assert (answer.risk_level, answer.risk_score) == (level, score)
    assert answer.summary == body["summary"].strip()


@given(st.data(), st.booleans())
def test_a_boolean_score_is_never_read(data: st.DataObject, flag: bool) -> None:
    body, _, _ = data.draw(assessments())
    with pytest.raises(ValueError, match="risk_score"):
        parse_answer(data.draw(wrapped({**body, "risk_score": flag})))


@given(st.data(), st.text(max_size=20))
def test_an_unknown_level_is_never_read(data: st.DataObject, level: str) -> None:
    try:
        parse_answer(json.dumps({**BODY, "risk_level": level}))
    except ValueError:
        known = False
    else:
        known = True
    body, _, _ = data.draw(assessments())
    reply = data.draw(wrapped({**body, "risk_level": level}))
    if known:  # a spelling the table accepts: read the same wrapped or not
        assert parse_answer(reply).risk_level == parse_answer(_with(risk_level=level)).risk_level
    else:
        with pytest.raises(ValueError, match="risk_level"):
            parse_answer(reply)


@given(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_a_number_score_is_clamped_or_malformed_never_out_of_range(score: float) -> None:
    try:
        answer = parse_answer(_with(risk_score=score))
    except ValueError as exc:
        assert 0 < score < 1 and "ambiguous" in str(exc)
        return
    assert 0 <= answer.risk_score <= 100
    assert bool(answer.adjustments) == (answer.risk_score != score)
