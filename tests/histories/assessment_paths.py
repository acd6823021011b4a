"""The paths of RiskAssessmentWorkflow and ReplayAssessmentWorkflow (tests/histories/paths.py),
as tests/test_workflow.py and tests/test_failover.py drive them."""

from __future__ import annotations

import uuid
from typing import Any

from activities.keypool import KeyPool
from riskflow.config.replay import Candidate
from riskflow.contracts.assessment import AssessmentStatus
from riskflow.contracts.replay import ReplayTaskInput
from tests.conftest import eventually
from tests.histories.record import (
    DEV,
    DEV_QUEUE,
    REPLAY_QUEUE,
    SKIP,
    SKIP_QUEUE,
    Recorder,
    expect,
)
from tests.test_workflow import make_input
from workflows.assessment import RiskAssessmentWorkflow
from workflows.replay import ReplayAssessmentWorkflow


async def _assessment(rec: Recorder, name: str, what: str, **faults: Any) -> AssessmentStatus:
    if faults:
        await rec.dashscope.faults(**faults)
    inp = make_input(f"rec-{name}")
    handle = await rec.dev.start_workflow(
        RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=DEV_QUEUE
    )
    await handle.result()
    await rec.save(name, handle, DEV, what)
    return await handle.query(RiskAssessmentWorkflow.status)


async def assessments(rec: Recorder) -> None:
    status = await _assessment(rec, "assessment-assessed", "assessed at the first call")
    expect(status.stage == "assessed" and status.llm_attempts == 1, "assessed at once")
    status = await _assessment(
        rec, "assessment-repaired", "an unreadable answer, repaired", script=["malformed"]
    )
    expect(status.stage == "assessed" and status.repairs == 1, "repaired")
    status = await _assessment(
        rec, "assessment-backoff", "a server error, a 1 s backoff timer, assessed", script=["500"]
    )
    expect(status.stage == "assessed" and status.llm_attempts == 2, "backed off")
    status = await _assessment(
        rec, "assessment-failed", "content rejected: failed, recorded", script=["content"]
    )
    expect(status.stage == "failed", "failed")


async def key_wait(rec: Recorder) -> None:
    """Every key disabled: a durable wait for a key (its jitter from `workflow.random()`),
    then the keys come back and it is assessed."""
    pool = KeyPool(rec.deps.redis, rec.settings.keys.scheduler)
    keys = [key.key_id for key in rec.settings.keys.api_keys]
    for key_id in keys:
        await pool.set_disabled(key_id, "recording a key wait")
    inp = make_input("rec-key-wait")
    handle = await rec.skip.client.start_workflow(
        RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=SKIP_QUEUE
    )

    async def waiting() -> bool:
        status = await handle.query(RiskAssessmentWorkflow.status)
        return status.key_waits >= 1

    await eventually(waiting, within=30)
    for key_id in keys:
        await pool.set_disabled(key_id, None)
    result = await handle.result()
    expect(result.status == "assessed", "assessed after a key wait")
    await rec.save("assessment-key-wait", handle, SKIP, "no key: waited for one, assessed")


async def replays(rec: Recorder) -> None:
    for name, faults, status in (
        ("replay-assessed", {}, "assessed"),
        ("replay-failed", {"script": ["content"]}, "failed"),
    ):
        if faults:
            await rec.dashscope.faults(**faults)
        inp = make_input(f"rec-{name}")
        task = ReplayTaskInput(assessment=inp, candidate=Candidate(name="current"))
        handle = await rec.dev.start_workflow(
            ReplayAssessmentWorkflow.run, task, id=inp.assessment_id, task_queue=REPLAY_QUEUE
        )
        outcome = await handle.result()
        expect(outcome.assessment.status == status, name)
        await rec.save(name, handle, DEV, f"a candidate's replay: {status}")


async def failover(rec: Recorder) -> None:
    """Account A refused: the site's failover chain moves to account B, marked degraded.
    Last: it re-syncs the key pool with another key configuration."""
    from tests.conftest import running_worker
    from tests.test_failover import ARREARAGE, CHAIN, two_accounts

    camera = "rec-failover"
    settings = two_accounts(rec.settings, camera, CHAIN)
    await rec.dashscope.faults(
        rules=[{"key_id": "key_1", "answer": {"status": 400, "body": ARREARAGE}}]
    )
    inp = make_input(camera)
    queue = f"histories-failover-{uuid.uuid4().hex[:6]}"
    async with running_worker(rec.dev, settings, rec.stack, queue):
        handle = await rec.dev.start_workflow(
            RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=queue
        )
        result = await handle.result()
    expect(result.degraded and result.key_id == "key_2", "failed over")
    await rec.save("assessment-failover", handle, DEV, "account A refused: failover, degraded")
