"""The paths of IncidentWorkflow (tests/histories/paths.py), as
tests/test_incident_workflow.py, tests/test_first_attempt.py and tests/test_incident_stack.py
drive them. Paths on the time-skipping server leave nothing running (a later path's skipped
time would move an earlier incident on): the one saved open is terminated after it is saved."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from riskflow.config.incidents import IncidentConfig, QuietPeriod
from riskflow.contracts.incidents import (
    IncidentFrame,
    IncidentStart,
    IncidentState,
    OperatorAction,
    incident_workflow_id,
)
from tests.histories.record import DEV, DEV_QUEUE, SKIP, SKIP_QUEUE, Recorder, expect
from tests.test_incident_workflow import LADDER, QUIET_CHECK, clear, crowd, fall, until
from workflows.assessment import RiskAssessmentWorkflow
from workflows.incident import IncidentWorkflow

LI = OperatorAction(by="li.wei")
ANSWER = {"risk_level": "high", "risk_score": 80, "summary": "a person is down"}


def answer(level: str, score: int, summary: str) -> dict[str, str]:
    return {"content": json.dumps({"risk_level": level, "risk_score": score, "summary": summary})}


async def act(handle: WorkflowHandle[Any, Any], update: str, action: OperatorAction) -> None:
    """An operator's update (`ack`, `resolve`, `dismiss`, `comment`), waited for."""
    await handle.execute_update(update, action)


async def open_incident(
    client: Client,
    queue: str,
    frame: IncidentFrame,
    config: IncidentConfig,
    timezone: str = "UTC",
) -> WorkflowHandle[Any, Any]:
    """As the bridge opens one: signal-with-start, the first frame as the start signal."""
    camera = frame.event.camera_id
    workflow_id = incident_workflow_id(camera, "hazard")
    start = IncidentStart(
        workflow_id=workflow_id,
        camera_id=camera,
        family="hazard",
        site_id="plant-a",
        timezone=timezone,
        config=config,
    )
    return await client.start_workflow(
        IncidentWorkflow.run,
        start,
        id=workflow_id,
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal="frame",
        start_signal_args=[frame],
    )


def ladder(**update: Any) -> IncidentConfig:
    config = {"escalation": LADDER, "auto_resolve_after_seconds": QUIET_CHECK, **update}
    return IncidentConfig.model_validate(config)


async def dismissed(rec: Recorder) -> None:
    """On the dev server: dismissed by the first assessment (silently), and by an operator
    after the first notification."""
    await rec.dashscope.faults(script=[answer("none", 3, "a mannequin on the floor")])
    handle = await open_incident(rec.dev, DEV_QUEUE, fall("rec-llm-dismiss", 1), ladder())
    view = await handle.result()
    expect(view.state == IncidentState.DISMISSED and not view.steps_sent, "dismissed by the LLM")
    await rec.save("incident-dismissed-by-llm", handle, DEV, "first assessment none: dismissed")
    handle = await open_incident(rec.dev, DEV_QUEUE, fall("rec-op-dismiss", 1), ladder())
    await until(handle, lambda v: v.steps_sent == ["L0"])
    await act(handle, "dismiss", OperatorAction(by="li.wei", text="ok"))
    view = await handle.result()
    expect(view.state == IncidentState.DISMISSED, "dismissed by an operator")
    what = "opened, notified L0, dismissed by an operator (dismissal notified)"
    await rec.save("incident-dismissed-by-operator", handle, DEV, what)


async def from_the_bridge(rec: Recorder) -> None:
    """As the bridge starts incidents (`workers.bridge.incident_starts`, the configured ladder of
    config/riskflow.yaml): a fall opens it, a later frame and a clear frame are signalled to
    it, an operator acknowledges and resolves it."""
    from devstack.simulate import scene_event
    from tests.test_bridge_faults import tuned
    from workers.bridge.incident_starts import IncidentStarts
    from workers.common.significance import assess_significance

    settings = tuned(rec.settings, DEV_QUEUE, mode="incidents", clear_signal_seconds=0.0)
    starts = IncidentStarts(rec.dev, settings, settings.assessment_policy())
    camera, now = "rec-bridge", datetime.now(UTC)
    for frame_id, falls in ((1, 1), (2, 2)):
        event = scene_event(camera, frame_id, now + timedelta(seconds=frame_id), 2, falls)
        situation = assess_significance(event, settings.significance)
        assert situation is not None
        await starts.signal_with_start(event, situation)
    workflow_id = incident_workflow_id(camera, "hazard")
    handle = rec.dev.get_workflow_handle_for(IncidentWorkflow.run, workflow_id)
    await until(handle, lambda v: v.steps_sent == ["L0"] and v.frames_seen == 2)
    expect(await starts.clear(scene_event(camera, 3, now + timedelta(seconds=3), 1, 0)), "clear")
    await act(handle, "ack", LI)
    await act(handle, "resolve", LI)
    view = await handle.result()
    resolved = view is not None and view.state == IncidentState.RESOLVED
    expect(resolved and view is not None and view.frames_seen == 2, "from the bridge")
    what = "started as the bridge does; a second frame, a clear frame; acked, resolved"
    await rec.save("incident-from-the-bridge", handle, DEV, what)


async def escalated(rec: Recorder) -> None:
    """Opened, notified at level 0, escalated to level 1, acknowledged, commented, resolved;
    and one left open mid-escalation (saved while it waits for level 2)."""
    env = rec.skip
    config = ladder(repeat_seconds=600, max_repeats=5)
    done = await open_incident(env.client, SKIP_QUEUE, fall("rec-ladder", 1), config)
    left = await open_incident(env.client, SKIP_QUEUE, fall("rec-open", 1), config)
    for handle in (done, left):
        await until(handle, lambda v: v.steps_sent == ["L0"])
    await env.sleep(timedelta(minutes=6))
    for handle in (done, left):
        await until(handle, lambda v: v.steps_sent == ["L0", "L1"])
    await act(left, "comment", OperatorAction(by="ops", text="seen"))
    await until(left, lambda v: v.timeline[-1].kind == "commented")
    what = "notified L0, escalated L1, a comment; saved open, waiting for L2"
    await rec.save("incident-open-mid-escalation", left, SKIP, what)
    await left.terminate("recorded")
    await act(done, "ack", LI)
    await act(done, "comment", OperatorAction(by="li.wei", text="omw"))
    await act(done, "resolve", LI)
    view = await done.result()
    expect(view.state == IncidentState.RESOLVED and view.escalation_level == 1, "resolved")
    what = "notified L0, escalated L1, acknowledged, commented, resolved (resolution notified)"
    await rec.save("incident-ladder-ack-resolve", done, SKIP, what)


async def reassessed(rec: Recorder) -> None:
    """Acknowledged, then a periodic reassessment answers higher (re-notified), then a more
    severe frame is reassessed at once (answers lower: kept); resolved."""
    await rec.dashscope.faults(
        script=[
            answer("medium", 50, "people crowding the aisle"),
            answer("critical", 95, "a forklift drives into the crowd"),
            answer("none", 2, "the aisle is empty"),
        ]
    )
    env, camera = rec.skip, "rec-reassess"
    config = ladder(escalation=LADDER[:1], reassess_every_seconds=600)
    handle = await open_incident(env.client, SKIP_QUEUE, crowd(camera, 1), config)
    await until(handle, lambda v: v.steps_sent == ["L0"])
    await act(handle, "ack", LI)
    await handle.signal(IncidentWorkflow.frame, crowd(camera, 2))
    await until(handle, lambda v: v.frames_seen == 2)
    await env.sleep(timedelta(minutes=11))
    await until(  # told at once as an upgrade (no ladder step, after the alarm-first patch)
        handle, lambda v: v.assessments == 2 and v.severity == "critical" and v.version >= 6
    )
    await handle.signal(IncidentWorkflow.frame, fall(camera, 3, people=5))
    await until(handle, lambda v: v.assessments == 3)
    await act(handle, "resolve", LI)
    view = await handle.result()
    expect(view.severity == "critical" and view.state == IncidentState.RESOLVED, "reassessed")
    what = "acked; periodic reassessment up (re-notified), a fall reassessed; resolved"
    await rec.save("incident-reassessed", handle, SKIP, what)


async def quiet_hours(rec: Recorder) -> None:
    """A medium incident in quiet hours: L0 and L1 held, one summary when the period ends."""
    env, zone = rec.skip, "Asia/Shanghai"
    local = (await env.get_current_time()).astimezone(ZoneInfo(zone))
    period = QuietPeriod(
        start=(local - timedelta(minutes=30)).time().replace(second=0, microsecond=0),
        end=(local + timedelta(hours=1)).time().replace(second=0, microsecond=0),
    )
    config = ladder(escalation=LADDER[:2], quiet_hours=[period])
    handle = await open_incident(env.client, SKIP_QUEUE, crowd("rec-quiet", 1), config, zone)
    await until(handle, lambda v: v.held == ["L0"])
    await env.sleep(timedelta(minutes=10))
    await until(handle, lambda v: v.held == ["L0", "L1"])
    await env.sleep(timedelta(hours=1))
    await until(handle, lambda v: not v.held and "summary-L1" in v.steps_sent)
    await act(handle, "resolve", LI)
    await handle.result()
    what = "quiet hours: L0, L1 held; one summary at the end; resolved"
    await rec.save("incident-quiet-hours", handle, SKIP, what)


async def auto_resolved(rec: Recorder) -> None:
    env, camera = rec.skip, "rec-auto"
    config = ladder(escalation=LADDER[:1], auto_resolve_after_seconds=300)
    handle = await open_incident(env.client, SKIP_QUEUE, fall(camera, 1), config)
    await until(handle, lambda v: v.steps_sent == ["L0"])
    await handle.signal(IncidentWorkflow.frame, clear(camera, 2))
    await env.sleep(timedelta(minutes=6))
    await until(handle, lambda v: v.state == IncidentState.RESOLVED)
    view = await handle.result()
    expect(view.closed_by == "auto-resolve", "auto-resolved")
    what = "a clear frame; after 5 quiet minutes a resolution check; resolved by auto-resolve"
    await rec.save("incident-auto-resolved", handle, SKIP, what)


async def expired(rec: Recorder) -> None:
    env = rec.skip
    config = ladder(escalation=LADDER[:1], expire_after_seconds=600)
    handle = await open_incident(env.client, SKIP_QUEUE, fall("rec-expire", 1), config)
    await until(handle, lambda v: v.steps_sent == ["L0"])
    await env.sleep(timedelta(minutes=11))
    view = await handle.result()
    expect(view.state == IncidentState.EXPIRED, "expired")
    await rec.save("incident-expired", handle, SKIP, "notified L0, expired after 10 minutes")


async def child_assessments(rec: Recorder) -> None:
    """A first attempt without an answer hands over to the child RiskAssessmentWorkflow
    (with what it spent): answered after a server error; failed on a content refusal."""
    env = rec.skip
    for name, script, status in (
        ("incident-child-assessment", ["500", {"content": json.dumps(ANSWER)}], "assessed"),
        ("incident-failed-assessment", ["content"], "failed"),
    ):
        await rec.dashscope.reset()
        await rec.dashscope.faults(script=script)
        camera = f"rec-{name.removeprefix('incident-')}"
        handle = await open_incident(env.client, SKIP_QUEUE, fall(camera, 1), ladder())
        view = await until(handle, lambda v: v.steps_sent == ["L0"])
        child = env.client.get_workflow_handle_for(
            RiskAssessmentWorkflow.run, f"{view.incident_id}-a1"
        )
        result = await child.result()
        expect(result.status == status, f"{name}: the child {status}")
        if status == "assessed":
            what = "the child of an incident: carries the first attempt's 500, backs off"
            await rec.save("assessment-child-of-incident", child, SKIP, what)
        await act(handle, "resolve", LI)
        await handle.result()
        what = f"first attempt failed, the child assessment {status}; notified L0; resolved"
        await rec.save(name, handle, SKIP, what)


async def continued_as_new(rec: Recorder) -> None:
    """Frames grow the history past `max_history_events` (100): continue-as-new carrying the
    incident; the next run escalates to L1 and is resolved."""
    env, camera = rec.skip, "rec-can"
    config = ladder(max_history_events=100)
    handle = await open_incident(env.client, SKIP_QUEUE, fall(camera, 1), config)
    before = await until(handle, lambda v: v.steps_sent == ["L0"])
    for frame_id in range(2, 62):
        await handle.signal(IncidentWorkflow.frame, fall(camera, frame_id))
    await until(handle, lambda v: v.frames_seen == 61 and v.run_id != before.run_id)
    first = env.client.get_workflow_handle(handle.id, run_id=before.run_id)
    what = "notified L0, 60 more frames: continued as new"
    await rec.save("incident-continued-as-new", first, SKIP, what)
    await env.sleep(timedelta(minutes=6))
    await until(handle, lambda v: v.steps_sent == ["L0", "L1"])
    await act(handle, "resolve", LI)
    view = await handle.result()
    same = view.incident_id == before.incident_id
    expect(same and view.state == IncidentState.RESOLVED, "the incident carried over")
    what = "the run after continue-as-new: escalated L1, resolved"
    await rec.save("incident-after-continue-as-new", handle, SKIP, what)


async def followed_up(rec: Recorder) -> None:
    """Acknowledged with a 10-minute ETA, a fall seen since: when the ETA runs out the
    incident is notified again (`still_present` to level 0) and level 1 goes; resolved.
    And acknowledged with an ETA, a clear frame since: the follow-up's check resolves it."""
    from tests.test_incident_follow_up import at

    env = rec.skip
    now = await env.get_current_time()
    still = await open_incident(env.client, SKIP_QUEUE, at(fall("rec-eta", 1), now), ladder())
    gone = await open_incident(env.client, SKIP_QUEUE, at(fall("rec-eta-gone", 1), now), ladder())
    for handle in (still, gone):
        view = await until(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)
        ack = OperatorAction(by="li.wei", incident_id=view.incident_id, eta_minutes=10)
        await act(handle, "ack", ack)
    later = now + timedelta(minutes=2)
    await still.signal(IncidentWorkflow.frame, at(fall("rec-eta", 2), later))
    await gone.signal(IncidentWorkflow.frame, at(clear("rec-eta-gone", 2), later))
    await until(still, lambda v: v.frames_seen == 2)
    await env.sleep(timedelta(minutes=11))
    view = await until(still, lambda v: "L1" in v.steps_sent)
    expect(view.state == IncidentState.NOTIFIED, "resumed after the ETA")
    await act(still, "resolve", LI)
    await still.result()
    await rec.save("incident-eta-still-present", still, SKIP, "ack with ETA, fall since: resumed")
    view = await gone.result()
    expect(view.state == IncidentState.RESOLVED, "resolved by the follow-up")
    await rec.save("incident-eta-gone", gone, SKIP, "ack with ETA, clear since: resolved")
