"""IncidentWorkflow (after the `alarm-first` patch) where it meets Temporal's own limits: the
history's continue-as-new point reached while an assessment runs beside the loop, update
handlers still running when it continues as new, a closed incident still waiting for a
message while the camera's next frame arrives (the bridge signals-with-start, conflict policy
USE_EXISTING), and local activities of concurrent tasks replayed. Stand-in activities
(tests/incident_stand_ins.py) on the time-skipping server; no assertion depends on elapsed
time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import NondeterminismError

from riskflow.config.incidents import EscalationStep, IncidentConfig
from riskflow.contracts.assessment import RiskAnswer
from riskflow.contracts.incidents import (
    IncidentStart,
    IncidentState,
    IncidentView,
    OperatorAction,
    incident_workflow_id,
)
from tests.conftest import eventually
from tests.histories.changed import ReorderedChannels
from tests.incident_stand_ins import StandIns, crowd, fall, signal_with_start, stand_in_worker
from tests.test_incident_workflow import until, view_of
from workflows.assessment import RiskAssessmentWorkflow
from workflows.incident import IncidentWorkflow
from workflows.incident_plan import notification
from workflows.policies import NOTIFY_SEND_GIVE_UP

QUIET_CHECK = 3 * 3600.0  # auto-resolve out of the way


def level_0(*channels: str, **settings: Any) -> IncidentConfig:
    """A one-level ladder to `channels`, auto-resolve out of the way, and `settings`."""
    return IncidentConfig(
        escalation=[EscalationStep(after_seconds=0, channels=list(channels))],
        auto_resolve_after_seconds=QUIET_CHECK,
        **settings,
    )


async def failed_tasks(handle: WorkflowHandle[Any, Any]) -> list[str]:
    return [
        e.workflow_task_failed_event_attributes.failure.message
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


async def replayed(history: WorkflowHistory, incident: type) -> Exception | None:
    """The failure replaying `history` on `incident` (sandboxed as the worker does)."""
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "opentelemetry", "redis", "workflows"
        )
    )
    replayer = Replayer(
        workflows=[incident, RiskAssessmentWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=runner,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


def local_activities_per_task(events: Iterable[HistoryEvent]) -> list[set[str]]:
    """The local activity types whose markers each workflow task completion recorded."""
    per_task: list[set[str]] = [set()]
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            per_task.append(set())
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if "data" in details:
                per_task[-1].add(json.loads(details["data"].payloads[0].data)["activity_type"])
    return per_task


async def test_a_long_history_waits_for_the_running_assessment_without_freezing(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """The history passes `max_history_events` while the first assessment is still waiting
    for the model: the loop keeps serving frames and operators (no workflow task spins
    until Temporal calls it a deadlock) and continues as new once the assessment is in."""
    client = time_env.client
    config = level_0("ops", max_history_events=100)
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


async def test_a_new_fall_after_the_close_opens_an_incident_while_a_message_still_retries(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """An operator resolves the incident while a channel keeps answering "too fast": the
    run waits for that message, and the bridge's signal-with-start (USE_EXISTING) still
    reaches it. A frame of the closed incident changes nothing; a fall captured after the
    close opens a new incident at once (the message still under way goes on beside it)."""
    client = time_env.client
    config = level_0("ops", "slow")
    stand_ins = StandIns()
    stand_ins.throttled = {"slow"}
    camera = f"cam-{unique}"
    first = fall(camera, 1)
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await signal_with_start(client, task_queue, first, config)
        started.append(handle)
        await until(handle, lambda v: v.steps_sent == ["L0"])
        await handle.execute_update(IncidentWorkflow.resolve, OperatorAction(by="li.wei"))
        closed = await view_of(handle)
        assert closed.closed_at is not None
        old = fall(camera, 2, first.event.captured_at)  # the closed incident's own, late
        await signal_with_start(client, task_queue, old, config)
        later = closed.closed_at + timedelta(seconds=2)
        await signal_with_start(client, task_queue, fall(camera, 3, later), config)
        latest = client.get_workflow_handle(handle.id)
        view = await until(latest, lambda v: v.incident_id != closed.incident_id and v.steps_sent)
        first_run = client.get_workflow_handle(handle.id, run_id=closed.run_id)
        description = await first_run.describe()
    assert closed.state == IncidentState.RESOLVED
    assert description.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert view.incident_id.endswith(str(int(later.timestamp()))) and view.frames_seen == 1
    told = stand_ins.keys()
    assert told.count("L0:ops") == 2 and told.count("resolved:ops") == 1


async def test_an_operator_update_during_the_last_records_is_answered_before_continuing(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """The history is long; the assessment's end lets the run continue as new, and its
    records are written first: slowly (Redis slow or briefly down), longer than a workflow
    task may last, so Temporal delivers the next one meanwhile. An acknowledgement in it is
    answered (its own records written) before the run continues as new, not abandoned with
    it (the operator would get an error for an acknowledgement the view carries)."""
    client = time_env.client
    config = level_0("ops", max_history_events=100)
    stand_ins = StandIns()
    stand_ins.llm_open.clear()
    stand_ins.slow_records = {"assessed": 4.0, "acknowledged": 6.0}  # > 80% of the task's 2 s
    last_records = stand_ins.record_started["assessed"] = asyncio.Event()
    camera = f"cam-{unique}"
    task_timeout = timedelta(seconds=2)
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await signal_with_start(client, task_queue, fall(camera, 1), config, task_timeout)
        started.append(handle)
        before = await until(handle, lambda v: v.steps_sent == ["L0"])
        for frame_id in range(2, 40):
            await handle.signal(IncidentWorkflow.frame, fall(camera, frame_id))
        await until(handle, lambda v: v.frames_seen == 39)
        stand_ins.llm_open.set()
        await asyncio.wait_for(last_records.wait(), 20)
        async with asyncio.timeout(30):
            state = await handle.execute_update(IncidentWorkflow.ack, OperatorAction(by="li.wei"))
        latest = client.get_workflow_handle(handle.id)
        view = await until(latest, lambda v: v.run_id != before.run_id)
    assert state == IncidentState.ACKNOWLEDGED
    assert view.state == IncidentState.ACKNOWLEDGED and view.acknowledged_by == "li.wei"


async def test_local_activities_of_tasks_beside_the_loop_replay_in_their_recorded_order(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """The loop's records, an update's records and an assessment's task and aggregation are
    local activities in flight together, finishing in another order than they started.
    Replayed from history after every workflow task (no cache) and by the Replayer, each
    result reaches its own caller: no nondeterminism, no decoding failure (sdk-python
    issues #1578 and #1881 report both for concurrent local activities)."""
    client = time_env.client
    config = level_0("ops", "lead", count_step=1)
    stand_ins = StandIns()
    stand_ins.pause = {"record_incident": 0.3, "aggregate": 0.2}
    camera = f"cam-{unique}"
    async with stand_in_worker(client, task_queue, stand_ins, max_cached_workflows=0) as started:
        handle = await signal_with_start(client, task_queue, crowd(camera, 1, 5), config)
        started.append(handle)
        await until(handle, lambda v: v.steps_sent == ["L0"])
        for frame_id in range(2, 10):  # each one more person: each reassessed
            await handle.signal(IncidentWorkflow.frame, crowd(camera, frame_id, 5 + frame_id))
            if frame_id % 3 == 0:
                comment = OperatorAction(by="li.wei", text=f"seen {frame_id}")
                await handle.execute_update(IncidentWorkflow.comment, comment)
        await until(handle, lambda v: v.frames_seen == 9 and v.assessments >= 2)
        await handle.execute_update(IncidentWorkflow.resolve, OperatorAction(by="li.wei"))
        view = await handle.result()
        assert await failed_tasks(handle) == []
        history = await handle.fetch_history()
    failure = await replayed(history, IncidentWorkflow)
    assert failure is None, repr(failure)
    together = [types for types in local_activities_per_task(history.events) if len(types) > 1]
    assert any({"record_incident", "build_task"} <= types for types in together)
    assert isinstance(view, IncidentView) and view.state == IncidentState.RESOLVED


async def test_a_child_assessment_that_fails_is_recorded_as_failed(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """The first attempt finds no key and the child assessment takes over; the child fails
    (here its lease fails for good; terminated by hand or timed out, it ends the same way
    on a real server - the test server never tells a parent of a terminated child,
    sdk-java #2921). The incident records the assessment as failed and counts it, so its
    messages stop saying an assessment is pending; it is not lost in the task beside the
    loop."""
    client = time_env.client
    config = level_0("ops")
    stand_ins = StandIns()
    stand_ins.no_key = True
    camera = f"cam-{unique}"
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await signal_with_start(client, task_queue, fall(camera, 1), config)
        started.append(handle)
        view = await until(handle, lambda v: v.assessments == 1 and v.steps_sent == ["L0"])
    assessed = [e for e in view.timeline if e.kind == "assessed"]
    assert len(assessed) == 1 and assessed[0].detail.startswith("failed")
    assert view.state == IncidentState.NOTIFIED


def notify_scheduled(events: Iterable[HistoryEvent], key_suffix: str = "") -> list[HistoryEvent]:
    """The `notify` activities scheduled, those whose id (the idempotency key) ends so."""
    return [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "notify"
        and e.activity_task_scheduled_event_attributes.activity_id.endswith(key_suffix)
    ]


async def test_a_message_carried_into_the_next_run_keeps_the_time_it_spent(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """A message still trying when the run continues as new is carried with the time of its
    first attempt, and the next run tries it only for what is left of NOTIFY_SEND_GIVE_UP.
    Before, each run started it again from its first attempt (15 more): a busy scene that
    continues as new every few minutes kept a failing channel from ever giving up to its
    fallback."""
    client = time_env.client
    config = IncidentConfig(
        escalation=[EscalationStep(after_seconds=0, channels=["slow"], fallback_channels=["mail"])],
        max_history_events=100,
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    stand_ins = StandIns()
    stand_ins.throttled = {"slow"}
    camera = f"cam-{unique}"
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await signal_with_start(client, task_queue, fall(camera, 1), config)
        started.append(handle)
        view = await until(handle, lambda v: v.steps_sent == ["L0"])
        first_run, frame_id = view.run_id, 1
        while view.run_id == first_run:  # frames until the history is long
            for _ in range(10):
                frame_id += 1
                await handle.signal(IncidentWorkflow.frame, fall(camera, frame_id))
            view = await until(handle, lambda v: True)
        old = client.get_workflow_handle(handle.id, run_id=first_run)
        new = client.get_workflow_handle(handle.id, run_id=view.run_id)
        [tried] = notify_scheduled([e async for e in old.fetch_history_events()], ":L0:slow")
        events = [e async for e in new.fetch_history_events()]
    payloads = events[0].workflow_execution_started_event_attributes.input.payloads
    [carried] = client.data_converter.payload_converter.from_payloads(payloads, [IncidentStart])
    [key] = [key for key in carried.sends_since if key.endswith(":L0:slow")]
    first_tried = tried.event_time.ToDatetime(UTC)
    assert abs(carried.sends_since[key] - first_tried) < timedelta(seconds=1)
    [retried] = notify_scheduled(events, ":L0:slow")
    continued = events[0].event_time.ToDatetime(UTC)
    left = retried.activity_task_scheduled_event_attributes.schedule_to_close_timeout
    expected = NOTIFY_SEND_GIVE_UP - (continued - first_tried)
    assert abs(left.ToTimedelta() - expected) < timedelta(seconds=2)


async def test_a_message_carried_past_its_time_gives_up_and_its_fallback_is_told(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """A run that starts with a message first tried longer ago than NOTIFY_SEND_GIVE_UP does
    not try it again: it is recorded as failed and the level's fallback channel is told."""
    client = time_env.client
    config = IncidentConfig(
        escalation=[EscalationStep(after_seconds=0, channels=["slow"], fallback_channels=["mail"])],
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    stand_ins = StandIns()
    stand_ins.throttled = {"slow"}
    camera = f"cam-{unique}"
    workflow_id = incident_workflow_id(camera, "hazard")
    now = await time_env.get_current_time()
    start = IncidentStart(
        workflow_id=workflow_id,
        camera_id=camera,
        family="hazard",
        site_id="plant-a",
        timezone="UTC",
        config=config,
    )
    view = IncidentView(
        incident_id=f"{workflow_id}-1",
        workflow_id=workflow_id,
        camera_id=camera,
        site_id="plant-a",
        family="hazard",
        rule="fall",
        rule_severity=5,
        severity="high",
        state=IncidentState.NOTIFIED,
        steps_sent=["L0"],
        escalation_level=0,
        opened_at=now,
        notified_at=now,
        updated_at=now,
    )
    message = notification(start, view, "opened", 0, "L0", "slow")
    long_ago = now - NOTIFY_SEND_GIVE_UP - timedelta(minutes=1)
    carried = start.model_copy(
        update={
            "carried": view,
            "sends": [message],
            "sends_since": {message.idempotency_key: long_ago},
        }
    )
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await client.start_workflow(
            IncidentWorkflow.run, carried, id=workflow_id, task_queue=task_queue
        )
        started.append(handle)
        view = await until(handle, lambda v: any("slow failed" in e.detail for e in v.timeline))

        async def fallback_told() -> bool:
            return stand_ins.keys() == ["L0:slow:fallback:mail"]

        await eventually(fallback_told)
    assert stand_ins.refused == []  # not tried again


async def test_a_levels_messages_started_in_another_order_fail_the_replay(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """A level's two messages start in one workflow task; its history replayed on code that
    starts them in the other order. Replay compares an activity's type and id, not its input:
    with ids by sequence number the two `notify` activities swapped silently, each task
    getting the other's outcome (one channel's failure recorded against the other, the
    wrong fallback told) and the replay test saw nothing. With the message's idempotency
    key as its activity id the reorder is a nondeterminism error, as for any other change
    of commands (README: Versioning)."""
    client = time_env.client
    config = level_0("ops", "lead")
    stand_ins = StandIns()
    camera = f"cam-{unique}"
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await signal_with_start(client, task_queue, fall(camera, 1), config)
        started.append(handle)
        await until(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)
        await handle.execute_update(IncidentWorkflow.resolve, OperatorAction(by="li.wei"))
        await handle.result()
        history = await handle.fetch_history()
    expected = ["L0:lead", "L0:ops", "a1:lead", "a1:ops", "resolved:lead", "resolved:ops"]
    assert sorted(stand_ins.keys()) == expected
    assert await replayed(history, IncidentWorkflow) is None
    assert isinstance(await replayed(history, ReorderedChannels), NondeterminismError)


async def test_an_update_in_a_continued_runs_first_task_finds_the_carried_incident(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """Temporal runs signal and update handlers of a workflow task before the workflow's
    `run` starts (an acknowledgement sent as a run continues as new lands in the next
    run's first task). The carried incident is there for it: acknowledged, not refused
    as "not open yet"."""
    client = time_env.client
    config = level_0("ops")
    camera = f"cam-{unique}"
    workflow_id = incident_workflow_id(camera, "hazard")
    now = await time_env.get_current_time()
    start = IncidentStart(
        workflow_id=workflow_id,
        camera_id=camera,
        family="hazard",
        site_id="plant-a",
        timezone="UTC",
        config=config,
    )
    view = IncidentView(
        incident_id=f"{workflow_id}-1",
        workflow_id=workflow_id,
        camera_id=camera,
        site_id="plant-a",
        family="hazard",
        rule="fall",
        rule_severity=5,
        severity="high",
        state=IncidentState.NOTIFIED,
        steps_sent=["L0"],
        opened_at=now,
        notified_at=now,
        updated_at=now,
    )
    continued = WithStartWorkflowOperation(
        IncidentWorkflow.run,
        start.model_copy(update={"carried": view}),
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    async with stand_in_worker(client, task_queue, StandIns()) as started:
        state = await client.execute_update_with_start_workflow(
            IncidentWorkflow.ack, OperatorAction(by="li.wei"), start_workflow_operation=continued
        )
        handle = await continued.workflow_handle()
        started.append(handle)
        after = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert state == IncidentState.ACKNOWLEDGED and after.acknowledged_by == "li.wei"


async def test_a_fall_while_a_crowd_waits_for_the_model_is_told_at_once(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """A crowd opens the incident and waits (here up to a minute) for its first assessment;
    a fall comes in meanwhile: level 0 goes at once, as a fall, the model still silent."""
    client = time_env.client
    config = level_0("ops", notify_within_seconds=60)
    stand_ins = StandIns()
    stand_ins.llm_open.clear()
    camera = f"cam-{unique}"
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await signal_with_start(client, task_queue, crowd(camera, 1, 6), config)
        started.append(handle)
        await until(handle, lambda v: v.frames_seen == 1)
        await handle.signal(IncidentWorkflow.frame, fall(camera, 2))
        view = await until(handle, lambda v: v.steps_sent == ["L0"])
        stand_ins.llm_open.set()
    assert view.assessments == 0 and view.rule == "fall"
    [alarm] = stand_ins.sent
    assert alarm.kind == "opened" and alarm.severity == "high" and alarm.assessment_pending


async def test_a_crowds_no_risk_never_dismisses_the_fall_that_followed(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """The crowd's first assessment, asked before the fall came, answers "no risk": the
    incident stays open at the fall's severity (it was told as a fall), and the fall's own
    assessment follows."""
    client = time_env.client
    config = level_0("ops", notify_within_seconds=60)
    stand_ins = StandIns()
    stand_ins.llm_open.clear()
    stand_ins.answers = [RiskAnswer(risk_level="none", risk_score=2, summary="a queue")]
    camera = f"cam-{unique}"
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await signal_with_start(client, task_queue, crowd(camera, 1, 6), config)
        started.append(handle)
        await until(handle, lambda v: v.frames_seen == 1)
        await handle.signal(IncidentWorkflow.frame, fall(camera, 2))
        await until(handle, lambda v: v.steps_sent == ["L0"])
        stand_ins.llm_open.set()
        view = await until(handle, lambda v: v.assessments == 2)
    assert view.state == IncidentState.NOTIFIED and view.severity == "high"
    assert "dismissed" not in [r.kind for r in stand_ins.sent]


async def test_the_model_never_dismisses_what_a_person_acknowledged(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """A fall is told at once and acknowledged before the model answers "no risk": the
    person's acknowledgement stands (no dismissal, no cooldown hiding the next fall)."""
    client = time_env.client
    config = level_0("ops")
    stand_ins = StandIns()
    stand_ins.llm_open.clear()
    stand_ins.answers = [RiskAnswer(risk_level="none", risk_score=2, summary="a mannequin")]
    camera = f"cam-{unique}"
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await signal_with_start(client, task_queue, fall(camera, 1), config)
        started.append(handle)
        await until(handle, lambda v: v.steps_sent == ["L0"])
        await handle.execute_update(IncidentWorkflow.ack, OperatorAction(by="li.wei"))
        stand_ins.llm_open.set()
        view = await until(handle, lambda v: v.assessments == 1)
    assert view.state == IncidentState.ACKNOWLEDGED and view.closed_at is None
    assert [r.kind for r in stand_ins.sent] == ["opened", "assessed"]


async def test_levels_that_share_time_zero_are_all_told_at_once(
    time_env: WorkflowEnvironment, task_queue: str, unique: str
) -> None:
    """Two levels both due at once: each is told (a catch-up after an outage says only the
    highest; levels due at the same moment are not a missed past)."""
    client = time_env.client
    config = IncidentConfig(
        escalation=[
            EscalationStep(after_seconds=0, channels=["ops"]),
            EscalationStep(after_seconds=0, channels=["lead"]),
        ],
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    stand_ins = StandIns()
    camera = f"cam-{unique}"
    async with stand_in_worker(client, task_queue, stand_ins) as started:
        handle = await signal_with_start(client, task_queue, fall(camera, 1), config)
        started.append(handle)
        view = await until(handle, lambda v: v.steps_sent == ["L0", "L1"])
    assert {"L0:ops", "L1:lead"} <= set(stand_ins.keys())
    assert not any(e.detail.startswith("caught up") for e in view.timeline)
