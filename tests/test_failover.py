"""The failover chain (`riskflow.config.capacity`): account A's keys refused or cooling for
longer than the entry allows -> the assessment completes on account B (another provider and
model) and records what answered, marked degraded; a last entry of detections only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from temporalio.testing import WorkflowEnvironment

from devstack.simulate import scene_event
from riskflow.config.capacity import FailoverStep, SiteCapacity
from riskflow.config.keys import QuotaGroupConfig
from riskflow.config.settings import Settings
from riskflow.config.sites import SiteConfig
from riskflow.contracts.assessment import AssessmentInput
from riskflow.contracts.events import SnapshotRef
from riskflow.infra.endpoints import Endpoints
from riskflow.levels import RiskLevel
from tests.conftest import DashScopeAdmin, running_worker
from workflows.assessment import RiskAssessmentWorkflow

ARREARAGE = {
    "code": "Arrearage",
    "message": "Access denied, please make sure your account is in good standing.",
}
B_VISION = "qwen-vl-max"


def two_accounts(settings: Settings, camera: str, chain: list[FailoverStep]) -> Settings:
    """key_1 on account A (DashScope native), key_2 on account B (OpenAI-compatible); the
    camera's site fails over along `chain`."""
    provider = {"key_1": ("acct_a", "dashscope"), "key_2": ("acct_b", "openai")}
    keys = [
        key.model_copy(
            update={"quota_group": provider[key.key_id][0], "provider": provider[key.key_id][1]}
        )
        for key in settings.keys.api_keys
    ]
    groups = {name: QuotaGroupConfig(qps_limit=50, rpm_limit=3000) for name in ("acct_a", "acct_b")}
    site = SiteConfig(id="ward", cameras=[camera], capacity=SiteCapacity(failover=chain))
    key_config = settings.keys.model_copy(update={"api_keys": keys, "quota_groups": groups})
    return settings.model_copy(update={"keys": key_config, "sites": [site]})


CHAIN = [
    FailoverStep(quota_groups=["acct_a"], max_wait_seconds=5),
    FailoverStep(quota_groups=["acct_b"], vision_model=B_VISION),
    FailoverStep(text_only=True, text_model="qwen-turbo"),
]


async def _fall(redis: Redis, camera: str) -> AssessmentInput:
    await redis.set(f"snapshot:{camera}:1", b"\xff\xd8jpeg\xff\xd9")
    event = scene_event(camera, 1, datetime.now(UTC), people=2, falls=1).model_copy(
        update={"snapshot": SnapshotRef(store="redis", ref=f"snapshot:{camera}:1")}
    )
    return AssessmentInput(assessment_id=f"risk-{camera}-fall-1", situation="fall", event=event)


async def _run(env: WorkflowEnvironment, settings: Settings, stack: Endpoints, queue: str,
               inp: AssessmentInput) -> Any:  # fmt: skip
    async with running_worker(env.client, settings, stack, queue):
        return await env.client.execute_workflow(
            RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=queue
        )


async def test_account_a_refused_completes_on_account_b_marked_with_what_answered(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    camera = f"fo-{unique}"
    await dashscope_admin.faults(
        rules=[{"key_id": "key_1", "answer": {"status": 400, "body": ARREARAGE}}]
    )
    inp = await _fall(redis, camera)
    result = await _run(time_env, two_accounts(settings, camera, CHAIN), stack, task_queue, inp)
    assert result.status == "assessed" and result.risk_level == RiskLevel.HIGH
    assert result.key_id == "key_2" and result.degraded
    assert (result.provenance.provider, result.provenance.model) == ("openai", B_VISION)
    assert result.provenance.image_ref == f"redis:snapshot:{camera}:1"
    sent = [(r["key_id"], r["api"]) for r in await dashscope_admin.requests()]
    assert sent[-1] == ("key_2", "openai") and sent.count(("key_1", "dashscope")) == 1


async def test_an_account_cooling_longer_than_the_entry_waits_fails_over(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """Account A answers 429 for its whole allocation with Retry-After 300 s; the entry waits
    at most 5 s, so the assessment goes to account B instead of waiting five minutes."""
    camera = f"fo-cool-{unique}"
    quota = {"code": "Throttling.AllocationQuota", "message": "Allocated quota exceeded"}
    answer = {"status": 429, "body": quota, "headers": {"Retry-After": "300"}}
    await dashscope_admin.faults(rules=[{"key_id": "key_1", "answer": answer}])
    inp = await _fall(redis, camera)
    result = await _run(time_env, two_accounts(settings, camera, CHAIN), stack, task_queue, inp)
    assert result.status == "assessed" and result.key_id == "key_2" and result.degraded
    assert result.provenance.model == B_VISION


async def test_a_text_only_entry_assesses_the_detections_alone(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """Account A refused; the next entry sends no snapshot and asks its text model."""
    camera = f"fo-text-{unique}"
    await dashscope_admin.faults(
        rules=[{"key_id": "key_1", "answer": {"status": 400, "body": ARREARAGE}}]
    )
    text_entry = FailoverStep(quota_groups=["acct_b"], text_only=True, text_model="qwen-turbo")
    chain = [CHAIN[0], text_entry]
    inp = await _fall(redis, camera)
    result = await _run(time_env, two_accounts(settings, camera, chain), stack, task_queue, inp)
    assert result.status == "assessed" and result.degraded and result.key_id == "key_2"
    assert (result.provenance.model, result.provenance.image_ref) == ("qwen-turbo", None)
    [request] = [r for r in await dashscope_admin.requests() if r["key_id"] == "key_2"]
    assert request["endpoint"] == "text" and request["model"] == "qwen-turbo"
    assert "image_url" not in json.dumps(request)
