"""RiskAssessmentWorkflow on Temporal's time-skipping server, with a real worker: real Valkey,
tansu and the local DashScope server answering with scripted faults."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import UTC, datetime

from pydantic import SecretStr
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.aggregate import AggregateActivities
from activities.keypool import KeyPool
from devstack.simulate import scene_event
from riskflow.config.keys import KeyRing
from riskflow.config.llm import AssessmentPolicy
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment, AssessmentInput, AssessmentStatus
from riskflow.contracts.events import SnapshotRef
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient
from riskflow.levels import RiskLevel
from riskflow.names import RESULTS_TOPIC, assessment_key, camera_alerts_key, camera_latest_key
from tests.conftest import DashScopeAdmin, read_topic, running_worker
from workers.worker.worker import build_worker, worker_deps
from workflows.assessment import RiskAssessmentWorkflow

SECRETS = ("sk-local-demo-1", "sk-local-demo-2")


def make_input(
    camera: str, falls: int = 1, policy: AssessmentPolicy | None = None
) -> AssessmentInput:
    event = scene_event(camera, 7, datetime.now(UTC), people=2, falls=falls)
    return AssessmentInput(
        assessment_id=f"risk-{camera}-fall-{uuid.uuid4().hex[:8]}",
        situation="fall" if falls else "person",
        severity=5,
        event=event,
        policy=policy or AssessmentPolicy(),
    )


async def run(
    client: Client, inp: AssessmentInput, task_queue: str
) -> tuple[Assessment, AssessmentStatus]:
    handle = await client.start_workflow(
        RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=task_queue
    )
    result = await handle.result()
    status = await handle.query(RiskAssessmentWorkflow.status)
    assert await handle.query(RiskAssessmentWorkflow.result) == result
    history = (await handle.fetch_history()).to_json()
    assert not any(secret in history for secret in SECRETS), "a key secret entered history"
    return result, status


async def test_event_becomes_assessment_in_redis(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    store_url: str,
    store: RedisClient,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """On one Redis, and with the worker's every Redis use on a Redis Cluster."""
    inp = make_input(f"cam-{unique}")
    endpoints = dataclasses.replace(stack, redis=store_url)
    async with running_worker(time_env.client, settings, endpoints, task_queue):
        result, status = await run(time_env.client, inp, task_queue)
    assert result.status == "assessed" and result.risk_level == RiskLevel.HIGH
    assert result.key_id in ("key_1", "key_2") and status.key_id == result.key_id
    assert status.stage == "assessed" and status.llm_attempts == 1
    assert [t.stage for t in status.timings] == ["building_task", "calling_llm", "aggregating"]
    latest = json.loads(await store.get(camera_latest_key(inp.event.camera_id)))
    assert latest["assessment_id"] == inp.assessment_id and latest["risk_level"] == "high"
    alerts = await store.lrange(camera_alerts_key(inp.event.camera_id), 0, -1)
    assert [json.loads(a)["assessment_id"] for a in alerts] == [inp.assessment_id]


async def test_long_backoff_after_server_errors_is_skipped(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    await dashscope_admin.faults(script=["500", "503", "500", "503", "500"])
    inp = make_input(f"cam-{unique}")
    started = time.monotonic()
    async with running_worker(time_env.client, settings, stack, task_queue):
        result, status = await run(time_env.client, inp, task_queue)
    assert result.status == "assessed" and status.llm_attempts == 6
    assert "ProviderError" in status.last_error
    backoff = sum(t.seconds or 0 for t in status.timings if t.stage == "backing_off")
    assert backoff >= 1 + 2 + 4 + 8 + 16  # workflow time...
    # ...skipped, not waited: the run took less wall time than the backoff alone (not a fixed
    # number of seconds, which a loaded machine can exceed).
    assert time.monotonic() - started < backoff


async def test_retry_after_cools_the_key_and_another_key_answers(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    await dashscope_admin.faults(script=["429"], retry_after_seconds=3600)
    inp = make_input(f"cam-{unique}")
    async with running_worker(time_env.client, settings, stack, task_queue) as deps:
        result, status = await run(time_env.client, inp, task_queue)
        states = {
            s.key_id: s for s in await KeyPool(deps.redis, settings.keys.scheduler).snapshot()
        }
    # A 429 spends none of the event's LLM attempts; Retry-After is clamped to the maximum.
    assert result.status == "assessed" and status.llm_attempts == 1
    assert "RateLimited" in status.last_error
    max_ms = settings.keys.scheduler.max_cooldown_seconds * 1000
    cooled = [s for s in states.values() if max_ms - 100_000 < s.cooldown_remaining_ms <= max_ms]
    assert len(cooled) == 1 and cooled[0].key_id != result.key_id
    assert cooled[0].counters["rate_limited"] == 1


async def test_malformed_answers_are_repaired_then_fail_with_reason(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    repaired, failed = make_input(f"cam-{unique}"), make_input(f"cam2-{unique}")
    async with running_worker(time_env.client, settings, stack, task_queue):
        await dashscope_admin.faults(script=["malformed", "malformed"])
        result, status = await run(time_env.client, repaired, task_queue)
        assert result.status == "assessed" and status.repairs == 2 and status.llm_attempts == 3
        await dashscope_admin.faults(script=["malformed", "malformed", "malformed"])
        result, status = await run(time_env.client, failed, task_queue)
    assert result.status == "failed" and "MalformedAnswer" in result.failure_reason
    assert "not JSON" in result.failure_reason
    # A failed assessment is recorded and published, but never becomes the camera's latest.
    assert await redis.get(camera_latest_key(failed.event.camera_id)) is None
    recorded = json.loads(await redis.get(assessment_key(failed.assessment_id)))
    assert recorded["status"] == "failed"


async def test_rejected_content_fails_without_retry(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    await dashscope_admin.faults(script=["content"])
    async with running_worker(time_env.client, settings, stack, task_queue):
        result, status = await run(time_env.client, make_input(f"cam-{unique}"), task_queue)
    assert result.status == "failed" and status.llm_attempts == 1
    assert "ContentRejected" in result.failure_reason


async def test_invalid_key_is_disabled_and_the_other_key_used(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    await dashscope_admin.faults(script=["invalid_key"])
    async with running_worker(time_env.client, settings, stack, task_queue) as deps:
        result, _ = await run(time_env.client, make_input(f"cam-{unique}"), task_queue)
        states = await KeyPool(deps.redis, settings.keys.scheduler).snapshot()
    assert result.status == "assessed"
    disabled = [s for s in states if not s.enabled]
    assert len(disabled) == 1 and "invalid key" in disabled[0].disabled_reason
    assert disabled[0].key_id != result.key_id


async def test_no_enabled_key_waits_durably_then_fails(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    inp = make_input(f"cam-{unique}", policy=AssessmentPolicy(max_key_wait_seconds=300))
    started = time.monotonic()
    async with running_worker(time_env.client, settings, stack, task_queue) as deps:
        pool = KeyPool(deps.redis, settings.keys.scheduler)
        for key in settings.keys.api_keys:
            await pool.set_disabled(key.key_id, "disabled by operator")
        result, status = await run(time_env.client, inp, task_queue)
    assert result.status == "failed" and "no API key available" in result.failure_reason
    assert status.key_waits >= 20 and status.llm_attempts == 0  # 10-12 s apart
    # The 300 s of waiting were workflow time, skipped (no fixed wall-clock bound).
    assert time.monotonic() - started < inp.policy.max_key_wait_seconds
    assert (await dashscope_admin.stats())["keys"]["key_1"]["requests"] == 0  # type: ignore[index]


async def test_aggregation_is_idempotent_and_ordered(
    settings: Settings, stack: Endpoints, store: RedisClient, unique: str
) -> None:
    """On one Redis and on Redis Cluster (where the camera's keys are in different slots)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka)
    await producer.start()
    try:
        activities = AggregateActivities(store, producer, settings.aggregate)
        env = ActivityEnvironment()
        now = datetime.now(UTC)
        newer = Assessment(
            assessment_id=f"a2-{unique}",
            camera_id=unique,
            situation="fall",
            status="assessed",
            captured_at=now,
            captured_ms=int(now.timestamp() * 1000),
            assessed_at=now,
            frame_id=2,
            risk_level=RiskLevel.CRITICAL,
            risk_score=95,
            summary="two down",
        )
        older = newer.model_copy(
            update={
                "assessment_id": f"a1-{unique}",
                "captured_ms": newer.captured_ms - 5000,
                "frame_id": 1,
                "risk_level": RiskLevel.HIGH,
            }
        )
        first = await env.run(activities.aggregate, newer)
        again = await env.run(activities.aggregate, newer)  # a retried activity
        late = await env.run(activities.aggregate, older)  # an older result arriving late
    finally:
        await producer.stop()
    assert first.alerted and not again.alerted and late.alerted
    assert not late.latest_updated
    latest = json.loads(await store.get(camera_latest_key(unique)))
    assert latest["assessment_id"] == newer.assessment_id
    alerts = [
        json.loads(a)["assessment_id"] for a in await store.lrange(camera_alerts_key(unique), 0, -1)
    ]
    assert alerts == [older.assessment_id, newer.assessment_id]
    published = await read_topic(stack.kafka, RESULTS_TOPIC, lambda d: d["camera_id"] == unique, 3)
    # At-least-once on the topic: the retried run published again, consumers dedupe by id.
    assert sorted(d["assessment_id"] for d in published) == sorted(
        [newer.assessment_id, newer.assessment_id, older.assessment_id]
    )


async def test_snapshot_goes_to_the_vision_model_and_a_lost_one_falls_back_to_text(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    key = f"snapshot:cam-{unique}:1"
    await redis.set(key, b"\xff\xd8\xff\xe0 a jpeg", ex=60)
    with_image, expired = make_input(f"cam-{unique}"), make_input(f"cam2-{unique}")
    with_image.event = with_image.event.model_copy(
        update={"snapshot": SnapshotRef(store="redis", ref=key)}
    )
    expired.event = expired.event.model_copy(
        update={"snapshot": SnapshotRef(store="redis", ref=f"snapshot:cam2-{unique}:gone")}
    )
    async with running_worker(time_env.client, settings, stack, task_queue):
        first, _ = await run(time_env.client, with_image, task_queue)
        second, _ = await run(time_env.client, expired, task_queue)
    assert first.status == second.status == "assessed"
    assert (await dashscope_admin.stats())["endpoints"] == {"vision": 1, "text": 1}


async def test_a_key_added_at_run_time_is_found_without_a_restart(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    async with worker_deps(settings, stack) as deps:
        # This worker started when only key_1 existed; key_2 was added later (keys sync).
        deps.ring = KeyRing({"key_1": SecretStr("sk-local-demo-1")})
        await KeyPool(deps.redis, settings.keys.scheduler).set_disabled("key_1", "operator")
        async with build_worker(time_env.client, settings, deps, task_queue):
            result, status = await run(time_env.client, make_input(f"cam-{unique}"), task_queue)
    assert result.status == "assessed" and result.key_id == "key_2" and status.llm_attempts == 1
