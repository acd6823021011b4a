"""Bounded per camera: twenty minutes of an 8 fps fall scene, with a channel failing
throughout, stay one incident whose runs keep their history short and whose continue-as-new
payloads stay small (the in-flight messages carried, never raw backlogs). On the dev server
with a real worker; the frames go as the bridge sends them (at most one per second of
capture time, `workers.bridge.incident_starts.left_out`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from devstack.simulate import scene_event
from riskflow.config.incidents import EscalationStep, IncidentConfig
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import IncidentFrame, IncidentState, incident_workflow_id
from riskflow.infra.endpoints import Endpoints
from tests.test_alarm_path import Channels, alarm_worker
from tests.test_incident_workflow import QUIET_CHECK, open_incident, until
from workers.bridge.incident_starts import Signalled, left_out
from workflows.incident import IncidentWorkflow

FPS, MINUTES = 8, 20
MAX_EVENTS = 400  # continue-as-new this soon (the default is 10,000): several runs here
PAYLOAD_LIMIT = 2 * 1024 * 1024  # Temporal's default blob size limit


@pytest.mark.timeout(300)  # 1,200 signals, one RPC each
async def test_twenty_minutes_of_a_scene_with_a_dead_channel_stay_bounded(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    task_queue: str,
    unique: str,
) -> None:
    camera = f"long-{unique}"
    config = IncidentConfig(
        escalation=[EscalationStep(after_seconds=0, channels=["ops-group", "shift-lead"])],
        max_history_events=MAX_EVENTS,
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    start = datetime.now(UTC) - timedelta(minutes=MINUTES)
    frames = [
        IncidentFrame(
            event=scene_event(camera, n, start + timedelta(seconds=n / FPS), people=2, falls=1),
            rule="fall",
            severity=5,
            count=1,
        )
        for n in range(MINUTES * 60 * FPS)
    ]
    channels = Channels(failing={"ops-group"})
    async with alarm_worker(client, settings, stack, task_queue, channels):
        handle = await open_incident(channels, client, task_queue, frames[0], config)
        last = Signalled(frames[0].event.captured_at, 5)
        sent = 1
        for frame in frames[1:]:
            this = Signalled(frame.event.captured_at, frame.severity)
            if left_out(last, this, timedelta(seconds=1)):
                continue
            await handle.signal(IncidentWorkflow.frame, frame)
            last, sent = this, sent + 1
        view = await until(handle, lambda v: v.frames_seen == sent)
        runs = [w async for w in client.list_workflows(f'WorkflowId = "{handle.id}"')]
        lengths, inputs = [], []
        for run in runs:
            events = [e async for e in client.get_workflow_handle(handle.id, run_id=run.run_id)
                      .fetch_history_events()]  # fmt: skip
            lengths.append(len(events))
            started = events[0].workflow_execution_started_event_attributes
            assert events[0].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
            inputs.append(sum(len(p.data) for p in started.input.payloads))
    print(
        f"\nBOUNDS {len(frames)} frames, {sent} signalled, {len(runs)} runs, "
        f"history events per run max {max(lengths)}, continue-as-new input max {max(inputs)} B"
    )
    assert handle.id == incident_workflow_id(camera, "hazard")
    assert view.state == IncidentState.NOTIFIED and view.frames_seen == sent
    assert sent == MINUTES * 60  # one a second of capture time
    assert len(runs) > 1  # it did continue as new
    assert max(lengths) < 2 * MAX_EVENTS  # a run ends soon after its budget
    assert max(inputs) < PAYLOAD_LIMIT // 20  # far below the limit: a summary, not a backlog
    assert sorted({r.channel for r, _ in channels.delivered}) == ["shift-lead"]
