"""Acknowledged is not done (workflows.incident_follow_up): an acknowledgement with an ETA is
followed up when the ETA runs out. IncidentWorkflow on Temporal's time-skipping server with a
real worker (real Valkey, the local broker, the fake DashScope). Frames count by when they
arrive, not by the camera's clock: the frames after the acknowledgement here come from a
camera whose clock is an hour slow."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from redis.asyncio import Redis
from temporalio.testing import WorkflowEnvironment

from riskflow.config.incidents import IncidentConfig
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import IncidentFrame, IncidentState, OperatorAction
from riskflow.infra.endpoints import Endpoints
from tests.conftest import DashScopeAdmin
from tests.test_incident_workflow import (
    LADDER,
    QUIET_CHECK,
    clear,
    fall,
    incident_worker,
    open_incident,
    until,
)
from workflows.incident import IncidentWorkflow

CONFIG = IncidentConfig(escalation=LADDER, auto_resolve_after_seconds=QUIET_CHECK)


def at(frame: IncidentFrame, when: datetime) -> IncidentFrame:
    """`frame` captured at `when` (the server's clock)."""
    return frame.model_copy(update={"event": frame.event.model_copy(update={"captured_at": when})})


@pytest.mark.parametrize("after_ack", ["fall", "clear", "nothing", "no-eta"])
async def test_when_the_eta_runs_out_the_camera_decides(
    after_ack: str,
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """Acknowledged with a 10-minute ETA: a fall seen since, or no frame at all, resumes the
    ladder (state back to notified, every level reached told `still_present`, the next
    level due goes); a clear frame since, which the check finds clear, resolves it with
    the frames before and after; without an ETA nothing is followed up."""
    camera = f"fu-{unique}"
    now = await time_env.get_current_time()
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        first = at(fall(camera, 1), now)
        handle = await open_incident(sent, time_env.client, task_queue, first, CONFIG)
        view = await until(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)
        eta = None if after_ack == "no-eta" else 10
        ack = OperatorAction(by="wang.gong", incident_id=view.incident_id, eta_minutes=eta)
        await handle.execute_update(IncidentWorkflow.ack, ack)
        acked = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
        assert (acked.follow_up_at is None) == (eta is None)
        later = now - timedelta(hours=1)  # a camera whose clock is an hour slow: it arrived since
        if after_ack == "fall":
            await handle.signal(IncidentWorkflow.frame, at(fall(camera, 2), later))
        elif after_ack == "clear":
            await handle.signal(IncidentWorkflow.frame, at(clear(camera, 2), later))
        await until(handle, lambda v: v.frames_seen == (2 if after_ack == "fall" else 1))
        await time_env.sleep(timedelta(minutes=11))
        if after_ack == "clear":
            view = await until(handle, lambda v: v.state == IncidentState.RESOLVED)
            assert view.closed_by == "auto-resolve"
            assert "follow-up: gone (frame 1 -> 2)" in view.timeline[-1].detail
            assert [r.kind for r in sent.requests][-1] == "resolved"
            return
        if after_ack == "no-eta":
            view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
            assert "still present" not in " ".join(e.detail for e in view.timeline)
            assert [r.kind for r in sent.requests] == ["opened", "assessed"]
            return
        view = await until(handle, lambda v: "L1" in v.steps_sent)
    assert view.state == IncidentState.NOTIFIED and view.follow_up_at is None
    resumed = next(e for e in view.timeline if "still present" in e.detail)
    assert resumed.detail.startswith("acknowledged 1") and "by wang.gong" in resumed.detail
    why = "frame 2 shows fall" if after_ack == "fall" else "no frame since the acknowledgement"
    assert why in resumed.detail
    kinds = [(r.kind, r.channel) for r in sent.requests]
    assert ("still_present", "ops-group") in kinds and ("escalated", "shift-lead") in kinds
    assert kinds.index(("still_present", "ops-group")) < kinds.index(("escalated", "shift-lead"))
