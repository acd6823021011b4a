"""Quiet hours through the real IncidentWorkflow on a daylight-saving night, on Temporal's
time-skipping server, and the `quiet-hours-dst` patch: a run recorded before it replays as it
ran (holding or sending a step is a command), and a run after it replays on today's code.

`histories/incident_dst_night_before_patch.json` was recorded by `dst_night_incident` below,
run on commit d082394 (before the patch): there the escalation step due at 01:45 EDT, after
the first 01:30 of the night, was sent; today it is held until the second 01:30 (EST)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from devstack.simulate import scene_event
from riskflow.config.incidents import EscalationStep, IncidentConfig, QuietPeriod
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import IncidentFrame, IncidentState, OperatorAction
from riskflow.infra.endpoints import Endpoints
from tests.test_incident_workflow import Recorder, incident_worker, open_incident, until
from workflows.assessment import RiskAssessmentWorkflow
from workflows.incident import IncidentWorkflow

NEW_YORK = "America/New_York"
HISTORIES = Path(__file__).resolve().parent / "histories"
BEFORE_PATCH = HISTORIES / "incident_dst_night_before_patch.json"
LONG = 400 * 24 * 3600.0  # expiry and auto-resolve out of the way


def next_fall_back(zone: str, after: datetime) -> datetime:
    """The first instant after `after` at which `zone`'s clocks go back (to the hour)."""
    tz, at = ZoneInfo(zone), after.replace(minute=0, second=0, microsecond=0)
    for _ in range(24 * 400):
        nxt = at + timedelta(hours=1)
        before, later = at.astimezone(tz).utcoffset(), nxt.astimezone(tz).utcoffset()
        if before is not None and later is not None and later < before:
            return nxt
        at = nxt
    raise AssertionError(f"{zone} never falls back after {after}")


def crowd(camera: str, frame_id: int) -> IncidentFrame:
    """Medium severity: held in quiet hours (below `quiet_hours_hold_below`, high)."""
    event = scene_event(camera, frame_id, datetime.now(UTC), people=5, falls=0)
    return IncidentFrame(event=event, rule="crowd", severity=2, count=5)


async def dst_night_incident(
    env: WorkflowEnvironment, sent: Recorder, task_queue: str, camera: str
) -> tuple[WorkflowHandle[Any, Any], datetime]:
    """A New York site quiet 22:00-01:30, an incident whose second step comes due at 01:45
    EDT of the night the clocks fall back (01:00-02:00 comes twice): after the first 01:30,
    before the second. Returns the handle and that due time, once time has skipped to 01:50
    EDT."""
    now = await env.get_current_time()
    due = next_fall_back(NEW_YORK, now + timedelta(hours=1)) - timedelta(minutes=15)
    config = IncidentConfig(
        escalation=[
            EscalationStep(after_seconds=0, channels=["ops-group"]),
            EscalationStep(after_seconds=(due - now).total_seconds(), channels=["shift-lead"]),
        ],
        quiet_hours=[QuietPeriod(start=time(22), end=time(1, 30))],
        auto_resolve_after_seconds=LONG,
        expire_after_seconds=LONG,
    )
    handle = await open_incident(sent, env.client, task_queue, crowd(camera, 1), config, NEW_YORK)
    await until(handle, lambda v: v.notified_at is not None)
    await env.sleep(due - now + timedelta(minutes=5))
    return handle, due


def replayer() -> Replayer:
    """As the worker runs workflows (workers.worker.build_worker)."""
    return Replayer(
        workflows=[IncidentWorkflow, RiskAssessmentWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                "opentelemetry", "redis", "workflows"
            )
        ),
    )


async def test_a_run_recorded_before_the_patch_replays_as_it_ran() -> None:
    history = WorkflowHistory.from_json("incident-dst", BEFORE_PATCH.read_text())
    await replayer().replay_workflow(history)


async def test_a_step_due_in_the_repeated_hour_is_held_until_the_second_end(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    task_queue: str,
    unique: str,
) -> None:
    client: Client = time_env.client
    async with incident_worker(client, settings, stack, task_queue) as sent:
        handle, due = await dst_night_incident(time_env, sent, task_queue, f"dst-{unique}")
        view = await until(handle, lambda v: v.held == ["L1"])
        assert [r.idempotency_key.split(":")[1] for r in sent.requests] == ["L0"]
        held = [e.detail for e in view.timeline if e.kind == "held"]
        # Until 01:30 EST, the second 01:30 of the night: after now, never before it.
        assert held == [
            "L1 held until "
            + (due + timedelta(minutes=45)).astimezone(ZoneInfo(NEW_YORK)).isoformat()
        ]
        await time_env.sleep(timedelta(minutes=45))
        view = await until(handle, lambda v: "summary-L1" in v.steps_sent)
        assert [r.kind for r in sent.requests] == ["opened", "summary"]
        assert view.steps_sent == ["L0", "L1", "summary-L1"] and not view.held
        acked = await handle.execute_update("ack", OperatorAction(by="ops"))
        assert acked == IncidentState.ACKNOWLEDGED
        await handle.execute_update("resolve", OperatorAction(by="ops"))
        final = await handle.result()
        history = await handle.fetch_history()
    assert final.state == IncidentState.RESOLVED
    await replayer().replay_workflow(history)
