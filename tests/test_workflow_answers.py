"""Reply shapes through a real worker: the local DashScope server answers each exact text, and
the workflow reads it without a repair call, or repairs it when its meaning is ambiguous
Time-skipping Temporal, real Valkey, tansu and the local server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.asyncio import Redis
from temporalio.testing import WorkflowEnvironment

from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.levels import RiskLevel
from riskflow.names import camera_latest_key
from tests.conftest import DashScopeAdmin, running_worker
from tests.test_workflow import make_input, run

# Not what the local server would answer by itself (high, 80), so the result shows that this
# reply was the one read.
BODY = {
    "risk_level": "critical",
    "risk_score": 93,
    "summary": "Two people are down near the loading bay.",
    "hazards": ["people down"],
    "recommended_actions": ["send first aid"],
}
TEXT = json.dumps(BODY)


def _with(**changes: Any) -> str:
    return json.dumps({**BODY, **changes}, ensure_ascii=False)


async def _requests_for(admin: DashScopeAdmin, camera: str) -> list[dict[str, Any]]:
    """The requests the local server received for this camera's prompt (its own only)."""
    return [r for r in await admin.requests() if f"Camera: {camera}\\n" in json.dumps(r)]


@pytest.mark.parametrize(
    ("reply", "score", "adjustments"),
    [
        # the examples
        (f"```JSON\n{TEXT}\n```", 93, []),
        (f"Here is the assessment:\n```json\n{TEXT}\n```", 93, []),
        (_with(risk_level="Critical"), 93, []),
        (_with(risk_score=92.5), 93, ["risk_score 92.5 rounded to 93"]),
        # other members of the kind
        (f"<think>Draft: {_with(risk_level='low')}</think>\n\n{TEXT}", 93, []),
        (_with(risk_level="严重", risk_score="93%"), 93, []),
        (_with(risk_score=140), 100, ["risk_score 140 clamped to 100"]),
        (json.dumps({"assessment": BODY}) + "\nHope this helps!", 93, []),
    ],
    ids=[
        "upper-fence",
        "prose-then-fence",
        "level-case",
        "float-score",
        "think-block",
        "chinese-level-percent",
        "clamped",
        "wrapped",
    ],
)
async def test_a_reply_with_one_valid_assessment_is_read_without_repair(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
    reply: str,
    score: int,
    adjustments: list[str],
) -> None:
    inp = make_input(f"ans-{unique}")
    await dashscope_admin.faults(script=[{"content": reply}])
    async with running_worker(time_env.client, settings, stack, task_queue):
        result, status = await run(time_env.client, inp, task_queue)
    assert result.status == "assessed" and status.repairs == 0 and status.llm_attempts == 1
    assert (result.risk_level, result.risk_score) == (RiskLevel.CRITICAL, score)
    assert result.summary == BODY["summary"] and result.adjustments == adjustments
    assert len(await _requests_for(dashscope_admin, inp.event.camera_id)) == 1
    latest = json.loads(await redis.get(camera_latest_key(inp.event.camera_id)))
    assert latest["adjustments"] == adjustments


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (_with(risk_score=True), "risk_score: expected a number 0-100, got True"),
        (_with(risk_level="very high"), "risk_level: unknown risk level 'very high'"),
        (f"{TEXT}\nOr rather: {_with(risk_level='low')}", "ambiguous: 2 different assessments"),
    ],
    ids=["boolean-score", "unknown-level", "two-assessments"],
)
async def test_a_reply_without_one_meaning_is_repaired(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
    reply: str,
    reason: str,
) -> None:
    inp = make_input(f"rep-{unique}")
    await dashscope_admin.faults(script=[{"content": reply}])  # then the server's own answer
    async with running_worker(time_env.client, settings, stack, task_queue):
        result, status = await run(time_env.client, inp, task_queue)
    assert result.status == "assessed" and status.repairs == 1 and status.llm_attempts == 2
    assert (result.risk_level, result.risk_score) == (RiskLevel.HIGH, 80)  # the repaired one
    assert reason in status.last_error
    requests = await _requests_for(dashscope_admin, inp.event.camera_id)
    assert len(requests) == 2
    repair = requests[1]["input"]["messages"][-1]["content"]
    assert "Your previous answer" in repair and reason in repair
