"""Severity first at a saturated key (`store`: single Valkey and Cluster): a waiting critical
assessment holds back less severe ones, cameras of one severity take turns, and the capacity
share reserved for the most severe is refused to the rest; then the same through the
workflow, on the dev server with a real worker and the local DashScope server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from temporalio.client import Client

from activities.keypool import KeyPool
from devstack.simulate import scene_event
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import AssessmentInput
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient
from tests.conftest import DashScopeAdmin, eventually, running_worker
from tests.test_keypool import keys_config, pool_for
from workflows.assessment import RiskAssessmentWorkflow

CRITICAL, LOW = 5, 1


async def _pool(store: RedisClient, qps: int, share: float = 0.0) -> KeyPool:
    return await pool_for(
        store,
        keys_config(
            {"key_id": "k", "qps_limit": qps, "rpm_limit": 1000, "max_concurrency": 100},
            severity_first=True,
            reserved_share=share,
            reserved_min_severity=CRITICAL,
        ),
    )


async def _granted(pool: KeyPool, waiter: str, severity: int, camera: str = "") -> bool:
    result = await pool.acquire(waiter=waiter, severity=severity, camera=camera)
    return result.lease is not None


async def test_the_reserved_share_is_kept_for_the_most_severe(store: RedisClient) -> None:
    pool = await _pool(store, qps=10, share=0.3)
    low = [await _granted(pool, f"low-{i}", LOW) for i in range(10)]
    assert low.count(True) == 7  # 70% of the second's 10 calls
    refused = await pool.acquire(waiter="low-x", severity=LOW)
    assert refused.lease is None and refused.reason == "reserved"
    critical = [await _granted(pool, f"crit-{i}", CRITICAL) for i in range(4)]
    assert critical == [True, True, True, False]  # the reserved 3, then the limit


async def test_a_waiting_critical_assessment_is_served_before_low_ones(store: RedisClient) -> None:
    pool = await _pool(store, qps=2)
    assert await _granted(pool, "low-0", LOW) and await _granted(pool, "low-1", LOW)
    # Saturated: both ask and wait; the critical one is recorded as waiting.
    assert not await _granted(pool, "crit", CRITICAL)
    assert not await _granted(pool, "low-2", LOW)
    await asyncio.sleep(1.1)  # the second's window frees
    first = await pool.acquire(waiter="low-2", severity=LOW)  # the low one asks first ...
    assert first.lease is None and first.reason == "priority"
    assert await _granted(pool, "crit", CRITICAL)  # ... the critical one gets the key
    assert await _granted(pool, "low-2", LOW)  # and then the low one


async def test_a_critical_waiter_that_stopped_asking_holds_nobody_back(store: RedisClient) -> None:
    pool = await pool_for(
        store,
        keys_config(
            {"key_id": "k", "qps_limit": 1, "rpm_limit": 1000},
            severity_first=True,
            waiter_ttl_seconds=0.5,
        ),
    )
    assert await _granted(pool, "low-0", LOW)
    assert not await _granted(pool, "crit", CRITICAL)  # gives up, never asks again
    await asyncio.sleep(1.1)
    assert await _granted(pool, "low-1", LOW)


async def test_cameras_of_one_severity_take_turns_oldest_first_within_a_camera(
    store: RedisClient,
) -> None:
    """Camera A queues three assessments, then camera B one: B's is served second, not last
    (first come, first served would make it wait for all of A's)."""
    pool = await _pool(store, qps=1)
    assert await _granted(pool, "z-0", LOW, "Z")  # the second's only call
    waiting = {f"a-{i}": "A" for i in range(3)} | {"b-0": "B"}
    for waiter, camera in waiting.items():
        assert not await _granted(pool, waiter, LOW, camera)
    served: list[str] = []
    while waiting:
        await asyncio.sleep(1.1)  # the window frees one call
        # Everyone asks, the newest first: the pool, not the order of asking, decides.
        for waiter in reversed(list(waiting)):
            if await _granted(pool, waiter, LOW, waiting[waiter]):
                served.append(waiter)
                del waiting[waiter]
                break
    assert served == ["a-0", "b-0", "a-1", "a-2"]


async def test_through_the_workflow_a_fall_overtakes_crowds_waiting_for_the_key(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """One key at 1 call/s, eight crowd assessments (severity 2) waiting for it, then a fall
    (severity 5): once the fall has asked, no crowd gets the key before it, so at most one
    crowd call (granted before the fall first asked) sits between the first crowd's and the
    fall's. (Without severity first the fall takes its turn among the crowds' timers.)"""
    key = settings.keys.api_keys[0].model_copy(update={"qps_limit": 1, "rpm_limit": 60})
    scheduler = settings.keys.scheduler.model_copy(update={"severity_first": True})
    keys = settings.keys.model_copy(update={"api_keys": [key], "scheduler": scheduler})
    one_key = settings.model_copy(update={"keys": keys})
    crowds = [
        AssessmentInput(
            assessment_id=f"risk-crowd-{unique}-{n}",
            situation="crowd",
            event=scene_event(f"crowd-{unique}-{n}", 1, datetime.now(UTC), people=6, falls=0),
        )
        for n in range(8)
    ]
    fall = AssessmentInput(
        assessment_id=f"risk-fall-{unique}",
        situation="fall",
        event=scene_event(f"fall-{unique}", 1, datetime.now(UTC), people=2, falls=1),
    )
    async with running_worker(client, one_key, stack, task_queue):
        handles = [
            await client.start_workflow(
                RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=task_queue
            )
            for inp in crowds
        ]

        async def crowds_waiting() -> bool:
            stages = [(await h.query(RiskAssessmentWorkflow.status)).stage for h in handles]
            return stages.count("waiting_for_key") >= 6

        await eventually(crowds_waiting, within=60)
        handles.append(
            await client.start_workflow(
                RiskAssessmentWorkflow.run, fall, id=fall.assessment_id, task_queue=task_queue
            )
        )
        results = [await h.result() for h in handles]
    assert all(r.status == "assessed" for r in results)
    sent = [json.dumps(r) for r in await dashscope_admin.requests()]
    order = [
        "fall" if f"fall-{unique}" in body else "crowd" for body in sent if f"-{unique}" in body
    ]
    assert len(order) == 9 and order.index("fall") <= 2, order
