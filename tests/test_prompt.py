from __future__ import annotations

import json

import pytest

from devstack.fake_dashscope.answer import answer_for
from devstack.simulate import scene_event
from riskflow.levels import RiskLevel
from riskflow.llm_text.prompt import parse_answer, user_prompt
from tests.test_significance import T0


def test_prompt_carries_detections_and_asks_for_json() -> None:
    text = user_prompt(scene_event("3", 5, T0, people=2, falls=1), "fall", ["earlier: low"])
    assert 'Detections (JSON): {"Fall": 1, "Normal": 1}' in text
    assert "json" in text.lower()
    assert "- earlier: low" in text


def test_local_server_answers_deterministically_from_the_prompt() -> None:
    messages = [{"role": "user", "content": user_prompt(scene_event("3", 5, T0, 2, 1), "fall", [])}]
    answer = parse_answer(answer_for(messages))
    assert answer.risk_level == RiskLevel.HIGH and answer.risk_score == 80
    assert answer_for(messages) == answer_for(messages)


def test_parse_answer_accepts_fenced_json() -> None:
    body = {"risk_level": "low", "risk_score": 10, "summary": "ok", "hazards": []}
    assert parse_answer("```json\n" + json.dumps(body) + "\n```").risk_level == RiskLevel.LOW


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"risk_level": "high", "risk_score": ', "not JSON"),
        ("[1, 2]", "not JSON"),
        ('{"risk_level": "apocalyptic", "risk_score": 5, "summary": "x"}', "risk_level"),
        ('{"risk_level": "low", "risk_score": true, "summary": "x"}', "risk_score"),
    ],
)
def test_parse_answer_rejects_with_a_reason(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_answer(text)
