"""Real provider behaviour through the whole workflow (time-skipping server, real worker,
Valkey and the local DashScope server answering the bodies real DashScope users report):
each refusal ends correctly, and no lease is left behind on any path."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY
from redis.asyncio import Redis
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.keypool import KeyPool
from activities.providers.base import LLMResponse
from riskflow.config.llm import AssessmentPolicy
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import AssessmentInput
from riskflow.contracts.events import SnapshotRef
from riskflow.infra.endpoints import Endpoints
from riskflow.names import KEYPOOL_PREFIX, camera_history_key
from tests.conftest import DashScopeAdmin, eventually, running_worker
from tests.test_workflow import make_input, run
from workers.worker.worker import build_worker, worker_deps
from workflows.assessment import RiskAssessmentWorkflow

ARREARAGE = {
    "code": "Arrearage",
    "message": "Access denied, please make sure your account is in good standing.",
}
JSON_MODE = {
    "code": "InvalidParameter",
    "message": "Json mode response is not supported when enable_thinking is true",
}
MODERATED = {
    "code": "DataInspectionFailed",
    "message": "Input data may contain inappropriate content.",
}
NO_DOWNLOAD = {"code": "InvalidParameter", "message": "Failed to download multimodal content"}


def refuse(body: dict[str, Any], status: int = 400, **match: object) -> dict[str, Any]:
    return {**match, "answer": {"status": status, "body": body}}


def refusals(kind: str, subject: str) -> float:
    """riskflow_llm_refusals_total{kind, subject} in this process (the worker's)."""
    labels = {"kind": kind, "subject": subject}
    return REGISTRY.get_sample_value("riskflow_llm_refusals_total", labels) or 0.0


async def leases_left(redis: Redis) -> int:
    """Leases still held in the key pool: lease records plus concurrency slots."""
    records = [k async for k in redis.scan_iter(match=f"{KEYPOOL_PREFIX}:lease:*")]
    slots = [await redis.zcard(k) async for k in redis.scan_iter(match=f"{KEYPOOL_PREFIX}:inf:*")]
    return len(records) + sum(slots)


async def with_snapshot(redis: Redis, inp: AssessmentInput, ref: str, stored: bool = True) -> None:
    if stored:
        await redis.set(ref, b"\xff\xd8\xff\xe0 a jpeg", ex=600)
    inp.event = inp.event.model_copy(update={"snapshot": SnapshotRef(store="redis", ref=ref)})


async def test_a_refused_account_is_taken_out_and_another_account_assesses(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    await dashscope_admin.faults(rules=[refuse(ARREARAGE, key_id="key_1")])
    before = refusals("AccountRefused", "key_1")
    async with running_worker(time_env.client, settings, stack, task_queue) as deps:
        results = [
            await run(time_env.client, make_input(f"cam{i}-{unique}"), task_queue) for i in range(3)
        ]
        states = {
            s.key_id: s for s in await KeyPool(deps.redis, settings.keys.scheduler).snapshot()
        }
    for result, status in results:
        assert result.status == "assessed" and result.key_id == "key_2"
        assert status.llm_attempts == 1  # the refusal was the account's, not the event's
    assert not states["key_1"].enabled and "Arrearage" in states["key_1"].disabled_reason
    assert states["key_2"].enabled
    assert [r["key_id"] for r in await dashscope_admin.requests()].count("key_1") <= 1
    assert refusals("AccountRefused", "key_1") == before + 1
    assert await leases_left(redis) == 0


async def test_a_configuration_refusal_fails_fast_and_keeps_the_keys(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    model = settings.llm.text_model
    await dashscope_admin.faults(rules=[refuse(JSON_MODE, model=model)])
    before = refusals("ConfigurationError", model)
    async with running_worker(time_env.client, settings, stack, task_queue) as deps:
        results = [
            await run(time_env.client, make_input(f"cam{i}-{unique}"), task_queue) for i in range(2)
        ]
        states = await KeyPool(deps.redis, settings.keys.scheduler).snapshot()
    for result, status in results:
        assert result.status == "failed" and status.llm_attempts == 1
        assert "ConfigurationError" in result.failure_reason
        assert "enable_thinking" in result.failure_reason
    assert all(s.enabled and s.cooldown_remaining_ms == 0 for s in states)
    assert refusals("ConfigurationError", model) == before + 2
    assert await leases_left(redis) == 0


async def test_moderation_drops_history_then_the_image_then_fails_with_the_reason(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    camera = f"cam-{unique}"
    await redis.lpush(camera_history_key(camera), "earlier: high (80) a person down")
    degraded, refused = make_input(camera), make_input(camera)
    await with_snapshot(redis, degraded, f"snapshot:{camera}:1")
    await with_snapshot(redis, refused, f"snapshot:{camera}:2")
    llm = settings.llm
    async with running_worker(time_env.client, settings, stack, task_queue):
        # History and image both refused: the text-only third try is assessed.
        await dashscope_admin.faults(
            rules=[refuse(MODERATED, contains="Recent assessments"), refuse(MODERATED, vision=True)]
        )
        result, status = await run(time_env.client, degraded, task_queue)
        sent = await dashscope_admin.requests()
        assert result.status == "assessed" and status.llm_attempts == 3
        assert [(r["endpoint"], r["model"]) for r in sent] == [
            ("vision", llm.vision_model),
            ("vision", llm.vision_model),
            ("text", llm.text_model),
        ]
        assert "Recent assessments" in str(sent[0]) and "Recent assessments" not in str(sent[1])
        # Refused whatever is dropped: fails with the provider's reason after three tries.
        await dashscope_admin.faults(rules=[refuse(MODERATED)])
        result, status = await run(time_env.client, refused, task_queue)
        assert result.status == "failed" and status.llm_attempts == 3
        assert "ContentRejected" in result.failure_reason
        assert "inappropriate content" in result.failure_reason
        # The refusal does not poison the camera: its next event is assessed with history.
        await dashscope_admin.faults()
        later, _ = await run(time_env.client, make_input(camera), task_queue)
    assert later.status == "assessed"
    history = await redis.lrange(camera_history_key(camera), 0, -1)
    assert len(history) == 3  # the seed, the degraded one and the later one; not the refusal
    assert await leases_left(redis) == 0


async def test_an_image_the_provider_cannot_fetch_and_an_expired_one_use_the_text_model(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    unfetchable, expired = make_input(f"cam-{unique}"), make_input(f"cam2-{unique}")
    await with_snapshot(redis, unfetchable, f"snapshot:cam-{unique}:1")
    await with_snapshot(redis, expired, f"snapshot:cam2-{unique}:gone", stored=False)
    await dashscope_admin.faults(rules=[refuse(NO_DOWNLOAD, vision=True)])
    async with running_worker(time_env.client, settings, stack, task_queue):
        first, first_status = await run(time_env.client, unfetchable, task_queue)
        second, second_status = await run(time_env.client, expired, task_queue)
    assert first.status == second.status == "assessed"
    assert (first_status.llm_attempts, second_status.llm_attempts) == (2, 1)
    llm = settings.llm
    assert [(r["endpoint"], r["model"]) for r in await dashscope_admin.requests()] == [
        ("vision", llm.vision_model),
        ("text", llm.text_model),
        ("text", llm.text_model),
    ]
    # The record says what really answered: the text model, no snapshot.
    for result in (first, second):
        assert (result.provenance.model, result.provenance.image_ref) == (llm.text_model, None)


async def test_429s_spend_no_attempt_and_an_account_429_cools_its_group(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    allocation = {"code": "Throttling.AllocationQuota", "message": "Allocated quota exceeded"}
    quick = {"Retry-After": "0.2"}  # the pool's clock is real: keep the cooldown short
    await dashscope_admin.faults(
        rules=[
            {"times": 1, "answer": {"status": 429, "body": allocation, "headers": quick}},
            {"times": 1, "answer": {"status": 429, "body": allocation, "headers": quick}},
        ]
    )
    inp = make_input(f"cam-{unique}", policy=AssessmentPolicy(max_llm_attempts=1))
    async with running_worker(time_env.client, settings, stack, task_queue):
        result, status = await run(time_env.client, inp, task_queue)
    assert result.status == "assessed" and status.llm_attempts == 1
    assert len(await dashscope_admin.requests()) == 3
    assert await leases_left(redis) == 0


class RaisingClient:
    """A provider client whose SDK raises (as DashScope's does on some bodies)."""

    timeout_seconds = 5.0

    def __init__(self, exc: BaseException) -> None:
        self.calls = 0
        self._exc = exc

    async def generate(self, **_: object) -> LLMResponse:
        self.calls += 1
        raise self._exc


async def test_an_exception_in_the_call_still_releases_the_lease(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    inp = make_input(f"cam-{unique}", policy=AssessmentPolicy(max_llm_attempts=2))
    async with worker_deps(settings, stack) as deps:
        deps.llm = RaisingClient(KeyError("code"))
        async with build_worker(time_env.client, settings, deps, task_queue):
            result, status = await run(time_env.client, inp, task_queue)
    assert result.status == "failed" and status.llm_attempts == 2
    assert await leases_left(redis) == 0


async def test_a_worker_shut_down_mid_call_finishes_it_and_releases_the_lease(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    await dashscope_admin.faults(script=["hang"], hang_seconds=2)
    inp = make_input(f"cam-{unique}")
    async with running_worker(client, settings, stack, task_queue):
        handle = await client.start_workflow(
            RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=task_queue
        )

        async def sent() -> bool:
            return len(await dashscope_admin.requests()) == 1

        await eventually(sent)
        assert await leases_left(redis) > 0
    # The worker waited for the call (graceful shutdown) and the lease went back with it.
    assert await leases_left(redis) == 0
    states = await KeyPool(redis, settings.keys.scheduler).snapshot()
    assert sum(s.counters.get("success", 0) for s in states) == 1
    async with running_worker(client, settings, stack, task_queue):
        assert (await asyncio.wait_for(handle.result(), 60)).status == "assessed"


async def test_an_hour_waiting_for_a_key_keeps_each_history_bounded(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """Every key's concurrency is held (the pool answers 'look again in 200 ms'): the waiting
    workflow neither polls at that rate nor grows one history without bound."""
    budget = 300
    policy = AssessmentPolicy(max_key_wait_seconds=7200, history_event_budget=budget)
    inp = make_input(f"cam-{unique}", policy=policy)
    async with running_worker(time_env.client, settings, stack, task_queue) as deps:
        pool = KeyPool(deps.redis, settings.keys.scheduler)
        held = []
        while (result := await pool.acquire(ttl_seconds=7200)).lease is not None:
            held.append(result.lease.lease_id)
        assert result.reason == "concurrency"
        handle = await time_env.client.start_workflow(
            RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=task_queue
        )
        await time_env.sleep(3600)
        for lease_id in held:
            await pool.release(lease_id, "unused")
        latest = time_env.client.get_workflow_handle_for(
            RiskAssessmentWorkflow.run, inp.assessment_id
        )
        result_ = await latest.result()
        sizes = await run_sizes(
            time_env.client, inp.assessment_id, handle.first_execution_run_id or ""
        )
    assert result_.status == "assessed"
    assert len(sizes) >= 2 and max(sizes) <= budget + 20, sizes
    assert sum(sizes) < 5000, sizes  # ~330 looks of ~13 events in an hour; 18,000 at 200 ms
    assert await leases_left(redis) == 0


async def run_sizes(client: Client, workflow_id: str, run_id: str) -> list[int]:
    """The event count of each run of a workflow that continued as new, first to last."""
    sizes = []
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        sizes.append(len(history.events))
        last = history.events[-1]
        run_id = ""
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return sizes
