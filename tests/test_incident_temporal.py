"""IncidentWorkflow (after the `alarm-first` patch) where it meets Temporal's own limits: the
history's continue-as-new point reached while an assessment runs beside the loop, update
handlers still running when it continues as new, a closed incident still waiting for a
message while the camera's next frame arrives (the bridge signals-with-start, conflict policy
USE_EXISTING), and local activities of concurrent tasks replayed. Stand-in activities
(tests/incident_stand_ins.py) on the time-skipping server; no assertion depends on elapsed
time."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from riskflow.config.incidents import EscalationStep, IncidentConfig
from riskflow.contracts.incidents import IncidentState, IncidentView, OperatorAction
from tests.conftest import eventually
from tests.incident_stand_ins import StandIns, fall, signal_with_start, stand_in_worker
from workflows.incident import IncidentWorkflow

QUIET_CHECK = 3 * 3600.0  # auto-resolve out of the way


async def view_of(handle: WorkflowHandle[Any, Any]) -> IncidentView:
    view = await handle.query(IncidentWorkflow.incident)
    assert isinstance(view, IncidentView)
    return view


async def until(handle: WorkflowHandle[Any, Any], check: Any) -> IncidentView:
    async def holds() -> bool:
        try:
            view = await handle.query(IncidentWorkflow.incident)
        except RPCError as exc:  # a query racing a run's continue-as-new on the test server
            if exc.status != RPCStatusCode.DEADLINE_EXCEEDED:
                raise
            return False
        return view is not None and bool(check(view))

    await eventually(holds, within=30)
    return await view_of(handle)


async def failed_tasks(handle: WorkflowHandle[Any, Any]) -> list[str]:
    return [
        e.workflow_task_failed_event_attributes.failure.message
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


async def test_a_long_history_waits_for_the_running_assessment_without_freezing(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """The history passes `max_history_events` while the first assessment is still waiting
    for the model: the loop keeps serving frames and operators (no workflow task spins
    until Temporal calls it a deadlock) and continues as new once the assessment is in."""
    client = time_env.client
    config = IncidentConfig(
        escalation=[EscalationStep(after_seconds=0, channels=["ops"])],
        max_history_events=100,
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    stand_ins = StandIns()
    stand_ins.llm_open.clear()
    camera = f"cam-{unique}"
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await signal_with_start(client, task_queue, fall(camera, 1), config)
        started.append(handle)
        before = await until(handle, lambda v: v.steps_sent == ["L0"])
        for frame_id in range(2, 40):  # well past 100 events
            await handle.signal(IncidentWorkflow.frame, fall(camera, frame_id))
        await until(handle, lambda v: v.frames_seen == 39)
        async with asyncio.timeout(20):
            state = await handle.execute_update(IncidentWorkflow.ack, OperatorAction(by="li.wei"))
        assert state == IncidentState.ACKNOWLEDGED
        assert await failed_tasks(handle) == []
        stand_ins.llm_open.set()
        latest = client.get_workflow_handle(handle.id)
        view = await until(latest, lambda v: v.run_id != before.run_id)
    assert view.state == IncidentState.ACKNOWLEDGED and view.assessments == 1
    assert view.incident_id == before.incident_id and view.frames_seen == 39
