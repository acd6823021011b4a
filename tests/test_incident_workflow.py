"""IncidentWorkflow on Temporal's time-skipping server with a real worker (real Valkey, tansu
and the local DashScope server behind the child assessments); notifications are recorded by
a stand-in `notify` activity instead of being sent."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from devstack.simulate import scene_event
from riskflow.config.incidents import EscalationStep, IncidentConfig, QuietPeriod
from riskflow.config.settings import Settings
from riskflow.config.sites import Language
from riskflow.contracts.incidents import (
    INVALID_TRANSITION,
    IncidentFrame,
    IncidentStart,
    IncidentState,
    IncidentView,
    OperatorAction,
    incident_workflow_id,
)
from riskflow.contracts.notifications import NotificationRequest, NotificationResult
from riskflow.infra.endpoints import Endpoints
from riskflow.names import camera_open_incidents_key, incident_key
from tests.conftest import DashScopeAdmin, eventually
from workers.worker.worker import build_worker, worker_deps
from workflows.incident import IncidentWorkflow

LADDER = [
    EscalationStep(after_seconds=0, channels=["ops-group"]),
    EscalationStep(after_seconds=300, channels=["shift-lead"]),
    EscalationStep(after_seconds=900, channels=["site-manager"]),
]
QUIET_CHECK = 3 * 3600.0  # auto-resolve out of the way where a test is about something else


class Recorder:
    """The `notify` activity of these tests: records every request, sends nothing."""

    def __init__(self) -> None:
        self.requests: list[NotificationRequest] = []
        self.started: list[WorkflowHandle[Any, Any]] = []

    @activity.defn(name="notify")
    async def notify(self, request: NotificationRequest) -> NotificationResult:
        self.requests.append(request)
        return NotificationResult(channel=request.channel, status="sent")

    def keys(self) -> list[str]:
        return [r.idempotency_key.split(":", 1)[1] for r in self.requests]


RecorderT = TypeVar("RecorderT", bound=Recorder)


def incident_worker(
    client: Client, settings: Settings, stack: Endpoints, task_queue: str
) -> contextlib.AbstractAsyncContextManager[Recorder]:
    return worker_with(Recorder(), client, settings, stack, task_queue)


@contextlib.asynccontextmanager
async def worker_with(
    recorder: RecorderT, client: Client, settings: Settings, stack: Endpoints, task_queue: str
) -> AsyncIterator[RecorderT]:
    """A real worker whose notify activity is `recorder`'s; the incidents the test put in
    `recorder.started` are terminated at the end."""
    async with (
        worker_deps(settings, stack) as deps,
        build_worker(client, settings, deps, task_queue, notify=recorder.notify),
    ):
        try:
            yield recorder
        finally:  # the time-skipping server is shared: leave no timers without a worker
            for handle in recorder.started:
                with contextlib.suppress(RPCError):
                    await handle.terminate("test over")


def fall(camera: str, frame_id: int, falls: int = 1, people: int = 2) -> IncidentFrame:
    event = scene_event(camera, frame_id, datetime.now(UTC), people=people, falls=falls)
    return IncidentFrame(event=event, rule="fall", severity=5, count=falls)


def crowd(camera: str, frame_id: int, people: int = 5) -> IncidentFrame:
    event = scene_event(camera, frame_id, datetime.now(UTC), people=people, falls=0)
    return IncidentFrame(event=event, rule="crowd", severity=2, count=people)


def clear(camera: str, frame_id: int) -> IncidentFrame:
    return IncidentFrame(event=scene_event(camera, frame_id, datetime.now(UTC), 1, 0))


async def open_incident(
    sent: Recorder,
    client: Client,
    task_queue: str,
    frame: IncidentFrame,
    config: IncidentConfig,
    timezone: str = "UTC",
    language: Language = "en",
) -> WorkflowHandle[Any, Any]:
    camera = frame.event.camera_id
    workflow_id = incident_workflow_id(camera, "hazard")
    start = IncidentStart(
        workflow_id=workflow_id,
        camera_id=camera,
        family="hazard",
        site_id="plant-a",
        timezone=timezone,
        language=language,
        config=config,
    )
    handle = await client.start_workflow(
        IncidentWorkflow.run,
        start,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal="frame",
        start_signal_args=[frame],
    )
    sent.started.append(handle)
    return handle


async def view_of(handle: WorkflowHandle[Any, Any]) -> IncidentView:
    """The incident's view now (see `until` for queries that are not answered)."""
    return await until(handle, lambda view: True)


QUERY_TIMEOUT = timedelta(seconds=3)


async def until(handle: WorkflowHandle[Any, Any], check: Any) -> IncidentView:
    """The incident's view once `check` holds for it (30 s at most).

    A query that is not answered in QUERY_TIMEOUT counts as "not yet": on the time-skipping
    test server a run's continue-as-new is not atomic (temporalio/sdk-java#1538), and a query
    that reaches the run being closed is never answered ("query deadline exceeded"); waiting
    for it without a bound blocked the server's later queries as well."""
    last: list[IncidentView | None] = [None]

    async def holds() -> bool:
        try:
            view = await handle.query(IncidentWorkflow.incident, rpc_timeout=QUERY_TIMEOUT)
        except RPCError as exc:
            if exc.status not in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
                raise
            return False
        last[0] = view
        return view is not None and bool(check(view))

    try:
        await eventually(holds, within=30)
    except AssertionError:
        raise AssertionError(f"not reached; incident is {last[0]!r}") from None
    assert isinstance(last[0], IncidentView)
    return last[0]


async def stored(redis: Redis, incident_id: str, check: Any) -> dict[str, Any]:
    """The incident's view in Redis once `check` holds for it. The workflow writes it in a
    local activity after the change a query already shows, so it may lag the query."""
    found: dict[str, Any] = {}

    async def holds() -> bool:
        raw = await redis.get(incident_key(incident_id))
        found.clear()
        found.update(json.loads(raw) if raw is not None else {})
        return bool(found) and bool(check(found))

    try:
        await eventually(holds, within=30)
    except AssertionError:
        raise AssertionError(f"stored view never matched; it is {found!r}") from None
    return found


async def test_three_level_ladder_over_thirty_minutes(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    config = IncidentConfig(
        escalation=LADDER, repeat_seconds=600, max_repeats=5, auto_resolve_after_seconds=QUIET_CHECK
    )
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, fall(camera, 1), config)
        view = await until(handle, lambda v: v.steps_sent == ["L0"])
        assert view.state == IncidentState.NOTIFIED and view.severity == "high"
        # Skipped, not waited: `until` gives up after 30 s of wall time, L1 is due at 300 s.
        await time_env.sleep(timedelta(minutes=30))
        view = await until(handle, lambda v: len(v.steps_sent) == 4)
    # L0 at once (a fall: before the model; its assessment follows to the level told), L1
    # after 5 min, L2 after 15, the first repeat of L2 at 25 (the next at 35).
    assert sent.keys() == [
        "L0:ops-group",
        "a1:ops-group",
        "L1:shift-lead",
        "L2:site-manager",
        "L2r1:site-manager",
    ]
    kinds = ["opened", "assessed", "escalated", "escalated", "reminder"]
    assert [r.kind for r in sent.requests] == kinds
    assert view.escalation_level == 2 and view.state == IncidentState.NOTIFIED
    await stored(
        redis,
        view.incident_id,
        lambda v: v["state"] == "notified" and v["steps_sent"] == view.steps_sent,
    )
    assert await redis.zscore(camera_open_incidents_key(camera), view.incident_id) is not None


async def test_ack_during_escalation_stops_it_and_invalid_transitions_are_refused(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    config = IncidentConfig(
        escalation=LADDER, repeat_seconds=600, max_repeats=5, auto_resolve_after_seconds=QUIET_CHECK
    )
    camera = f"cam-{unique}"
    acks = _sample("riskflow_incident_time_to_acknowledge_seconds_count")
    ack_seconds = _sample("riskflow_incident_time_to_acknowledge_seconds_sum")
    escalations = _sample("riskflow_incident_escalations_total", level="1")
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, fall(camera, 1), config)
        await until(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)
        await time_env.sleep(timedelta(minutes=6))
        await until(handle, lambda v: v.steps_sent == ["L0", "L1"])
        state = await handle.execute_update(IncidentWorkflow.ack, OperatorAction(by="li.wei"))
        assert state == IncidentState.ACKNOWLEDGED
        await time_env.sleep(timedelta(minutes=60))
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(IncidentWorkflow.ack, OperatorAction(by="someone"))
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == INVALID_TRANSITION
        assert "acknowledged" in cause.message
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(IncidentWorkflow.comment, OperatorAction(by="x", text=" "))
        await handle.execute_update(
            IncidentWorkflow.comment, OperatorAction(by="li.wei", text="on my way")
        )
        state = await handle.execute_update(IncidentWorkflow.resolve, OperatorAction(by="li.wei"))
        assert state == IncidentState.RESOLVED
        view = await handle.result()
    # Whoever was told hears of the close: both levels reached.
    keys = sent.keys()  # the two closing messages go side by side, in either order
    assert keys[:3] == ["L0:ops-group", "a1:ops-group", "L1:shift-lead"]
    assert sorted(keys[3:]) == ["resolved:ops-group", "resolved:shift-lead"]
    # Metrics: one more time to acknowledge (of at least the 6 minutes it took), level 1 once.
    assert _sample("riskflow_incident_time_to_acknowledge_seconds_count") == acks + 1
    assert _sample("riskflow_incident_time_to_acknowledge_seconds_sum") - ack_seconds >= 360
    assert _sample("riskflow_incident_escalations_total", level="1") == escalations + 1
    assert view.acknowledged_by == "li.wei" and view.closed_by == "li.wei"
    kinds = [(e.kind, e.actor) for e in view.timeline]
    assert ("acknowledged", "li.wei") in kinds and ("commented", "li.wei") in kinds
    assert kinds[-1] == ("resolved", "li.wei")
    await stored(redis, view.incident_id, lambda v: v["state"] == "resolved")
    assert await redis.zscore(camera_open_incidents_key(camera), view.incident_id) is None


async def test_duplicate_frames_are_ignored_and_a_new_class_reassesses(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    config = IncidentConfig(escalation=LADDER, auto_resolve_after_seconds=QUIET_CHECK)
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        first = crowd(camera, 1)
        handle = await open_incident(sent, time_env.client, task_queue, first, config)
        await until(handle, lambda v: v.steps_sent == ["L0"])
        for _ in range(3):  # redelivered: the same camera and frame id
            await handle.signal(IncidentWorkflow.frame, first)
            await handle.signal(IncidentWorkflow.frame, crowd(camera, 2))
        view = await until(handle, lambda v: v.frames_seen == 2)
        assert view.assessments == 1 and view.severity == "medium"
        await handle.signal(IncidentWorkflow.frame, fall(camera, 3, people=5))
        view = await until(handle, lambda v: v.assessments == 2)
    assert view.frames_seen == 3 and view.severity == "high" and view.rule == "fall"
    assert any(e.kind == "escalated" and "fall" in e.detail for e in view.timeline)


async def test_first_assessment_of_no_risk_dismisses_silently(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """A rule below life-safety waits for the model, which dismisses it before anyone is
    told; a fall was told at once, so its dismissal is told too."""
    answer = {"risk_level": "none", "risk_score": 3, "summary": "a queue at the canteen"}
    await dashscope_admin.faults(script=[{"content": json.dumps(answer)}] * 2)
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(
            sent, time_env.client, task_queue, crowd(camera, 1), IncidentConfig()
        )
        view = await handle.result()
        assert view.state == IncidentState.DISMISSED and view.closed_by == "llm"
        assert sent.requests == []
        assert [e.kind for e in view.timeline] == ["opened", "assessed", "dismissed"]
        other = f"{camera}-b"
        handle = await open_incident(
            sent, time_env.client, task_queue, fall(other, 1), IncidentConfig()
        )
        view = await handle.result()
    assert view.state == IncidentState.DISMISSED and view.closed_by == "llm"
    assert sent.keys() == ["L0:ops-group", "dismissed:ops-group"]
    assert [e.kind for e in view.timeline] == ["opened", "notified", "assessed", "dismissed"]


async def test_quiet_hours_hold_then_release_one_summary_and_life_safety_breaks_through(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    zone = "Asia/Shanghai"
    now = await time_env.get_current_time()  # the server's clock: earlier tests skipped time
    local = now.astimezone(ZoneInfo(zone))
    period = QuietPeriod(
        start=(local - timedelta(minutes=30)).time().replace(second=0, microsecond=0),
        end=(local + timedelta(hours=1)).time().replace(second=0, microsecond=0),
    )
    config = IncidentConfig(
        escalation=LADDER[:2], quiet_hours=[period], auto_resolve_after_seconds=QUIET_CHECK
    )
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        calm = await open_incident(
            sent, time_env.client, task_queue, crowd(f"q-{unique}", 1), config, zone
        )
        view = await until(calm, lambda v: v.held == ["L0"])
        assert view.severity == "medium" and sent.requests == []
        urgent = await open_incident(
            sent, time_env.client, task_queue, fall(f"u-{unique}", 1), config, zone
        )
        await until(urgent, lambda v: v.steps_sent == ["L0"])  # high: breaks through
        await time_env.sleep(timedelta(minutes=10))
        view = await until(calm, lambda v: v.held == ["L0", "L1"])
        await time_env.sleep(timedelta(hours=1))
        view = await until(calm, lambda v: not v.held)
    calm_keys = [r.idempotency_key for r in sent.requests if r.camera_id == f"q-{unique}"]
    assert calm_keys == [f"{view.incident_id}:summary-L1:shift-lead"]
    assert [r.kind for r in sent.requests if r.camera_id == f"q-{unique}"] == ["summary"]
    assert view.state == IncidentState.NOTIFIED


async def test_auto_resolve_on_a_clear_scene_not_on_a_briefly_clear_one(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    config = IncidentConfig(escalation=LADDER[:1], auto_resolve_after_seconds=300)
    brief, gone = f"b-{unique}", f"g-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        briefly = await open_incident(sent, time_env.client, task_queue, fall(brief, 1), config)
        cleared = await open_incident(sent, time_env.client, task_queue, fall(gone, 1), config)
        await until(briefly, lambda v: v.steps_sent == ["L0"])
        await until(cleared, lambda v: v.steps_sent == ["L0"])
        await briefly.signal(IncidentWorkflow.frame, clear(brief, 2))
        await cleared.signal(IncidentWorkflow.frame, clear(gone, 2))
        await time_env.sleep(timedelta(minutes=4))
        await briefly.signal(IncidentWorkflow.frame, fall(brief, 3))  # the hazard is back
        await until(briefly, lambda v: v.frames_seen == 2)
        await time_env.sleep(timedelta(minutes=4))
        # Queried, not awaited: awaiting a result lets the server skip time further.
        await until(cleared, lambda v: v.state == IncidentState.RESOLVED)
        resolved = await view_of(cleared)
        still = await view_of(briefly)
    assert resolved.state == IncidentState.RESOLVED and resolved.closed_by == "auto-resolve"
    assert resolved.assessments == 2  # the first assessment and the resolution check
    assert still.state == IncidentState.NOTIFIED and still.assessments == 1


async def test_a_resolution_check_that_still_sees_the_hazard_keeps_it_open(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    present = {"risk_level": "high", "risk_score": 70, "summary": "the person is still down"}
    await dashscope_admin.faults(
        rules=[{"contains": "resolution check", "answer": {"content": json.dumps(present)}}]
    )
    config = IncidentConfig(escalation=LADDER[:1], auto_resolve_after_seconds=300)
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, fall(camera, 1), config)
        await until(handle, lambda v: v.steps_sent == ["L0"])
        await handle.signal(IncidentWorkflow.frame, clear(camera, 2))
        await time_env.sleep(timedelta(minutes=6))
        view = await until(handle, lambda v: v.assessments == 2)
    assert view.state == IncidentState.NOTIFIED and view.closed_by == ""


async def test_continue_as_new_keeps_the_incident(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    config = IncidentConfig(
        escalation=LADDER, max_history_events=100, auto_resolve_after_seconds=QUIET_CHECK
    )
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        first = fall(camera, 1)
        handle = await open_incident(sent, time_env.client, task_queue, first, config)
        before = await until(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)
        for frame_id in range(2, 62):
            await handle.signal(IncidentWorkflow.frame, fall(camera, frame_id))
        await handle.signal(IncidentWorkflow.frame, first)  # seen before the continue-as-new
        view = await until(handle, lambda v: v.frames_seen == 61 and v.run_id != before.run_id)
        await time_env.sleep(timedelta(minutes=6))
        view = await until(handle, lambda v: v.steps_sent == ["L0", "L1"])
    assert view.incident_id == before.incident_id
    assert [e.kind for e in view.timeline].count("opened") == 1 and view.assessments == 1
    assert len(view.recent_frames) == config.max_frames
    assert sent.keys() == ["L0:ops-group", "a1:ops-group", "L1:shift-lead"]


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_failed_first_assessment_keeps_a_fall_open_and_notified(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    await dashscope_admin.faults(script=["content"])  # rejected: the assessment fails
    config = IncidentConfig(
        escalation=LADDER[:1], auto_resolve_after_seconds=QUIET_CHECK, quiet_hours=[ALWAYS]
    )
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, fall(camera, 1), config)
        view = await until(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)
    # Not dismissed, not held in quiet hours: a fall is high until an assessment says otherwise.
    assert view.state == IncidentState.NOTIFIED and view.severity == "high"
    assert any(e.kind == "assessed" and e.detail.startswith("failed") for e in view.timeline)
    assert sent.keys() == ["L0:ops-group"]


ALWAYS = QuietPeriod(start=datetime.min.time(), end=datetime.min.time())


def _answer(level: str, score: int, summary: str) -> dict[str, str]:
    body = {"risk_level": level, "risk_score": score, "summary": summary}
    return {"content": json.dumps(body)}


def _llm_assessments(view: IncidentView) -> int:
    return sum(1 for e in view.timeline if e.kind == "assessed" and e.actor == "llm")


async def _frames_every(
    handle: WorkflowHandle[Any, Any],
    time_env: WorkflowEnvironment,
    make: Any,
    count: int,
    every: timedelta,
) -> None:
    """`count` new frames, one every `every` of skipped time (each seen before time moves)."""
    for i in range(count):
        seen = (await view_of(handle)).frames_seen
        await handle.signal(IncidentWorkflow.frame, make(i + 2))
        await until(handle, lambda v, n=seen: v.frames_seen == n + 1)
        await time_env.sleep(every)


@pytest.mark.parametrize("every_seconds", [600.0, 0.0])
async def test_an_open_incident_reassesses_its_newest_frame_every_interval(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
    every_seconds: float,
) -> None:
    # Opened at 0 and assessed; frames at 0, 4, ..., 28 min; 35 min open. Every 10 min after
    # the last assessment, if a frame arrived since: at 10 (frame of 8), 20 (16), 30 (28);
    # 40 is not reached. 1 + 3 assessments; with 0 (off) only the first.
    config = IncidentConfig(
        escalation=LADDER[:1],
        reassess_every_seconds=every_seconds,
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, crowd(camera, 1), config)
        await until(handle, lambda v: v.assessments == 1 and v.steps_sent == ["L0"])
        make = lambda frame_id: crowd(camera, frame_id)  # noqa: E731
        await _frames_every(handle, time_env, make, 8, timedelta(minutes=4))
        await time_env.sleep(timedelta(minutes=3))
        expected = 4 if every_seconds else 1
        view = await until(handle, lambda v: v.assessments >= expected)
    assert view.frames_seen == 9 and view.state == IncidentState.NOTIFIED
    assert view.assessments == expected and _llm_assessments(view) == expected
    assert sent.keys() == ["L0:ops-group"]  # the same severity: nobody is notified again


async def test_no_new_frame_no_reassessment_until_one_arrives(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    config = IncidentConfig(
        escalation=LADDER[:1], reassess_every_seconds=600, auto_resolve_after_seconds=QUIET_CHECK
    )
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, crowd(camera, 1), config)
        await until(handle, lambda v: v.assessments == 1 and v.steps_sent == ["L0"])
        for frame_id in range(100, 107):  # clear frames and a redelivered one are nothing new
            frame = clear(camera, frame_id) if frame_id < 106 else crowd(camera, 1)
            await handle.signal(IncidentWorkflow.frame, frame)
            await time_env.sleep(timedelta(minutes=5))
        view = await view_of(handle)
        assert view.assessments == 1 and _llm_assessments(view) == 1 and view.frames_seen == 1
        # The interval has long passed: a new frame is reassessed at once.
        await handle.signal(IncidentWorkflow.frame, crowd(camera, 2))
        view = await until(handle, lambda v: v.assessments == 2)
    assert _llm_assessments(view) == 2 and view.frames_seen == 2


async def test_a_reassessment_that_answers_higher_escalates_and_lower_never_dismisses(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    await dashscope_admin.faults(
        script=[
            _answer("medium", 50, "people crowding the aisle"),
            _answer("critical", 95, "a forklift drives into the crowd"),
            _answer("none", 2, "the aisle is empty"),
        ]
    )
    config = IncidentConfig(
        escalation=LADDER[:1], reassess_every_seconds=600, auto_resolve_after_seconds=QUIET_CHECK
    )
    camera = f"cam-{unique}"
    make = lambda frame_id: crowd(camera, frame_id)  # noqa: E731
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, make(1), config)
        view = await until(handle, lambda v: v.assessments == 1 and v.steps_sent == ["L0"])
        assert view.severity == "medium"
        await handle.execute_update(IncidentWorkflow.ack, OperatorAction(by="li.wei"))
        await _frames_every(handle, time_env, make, 1, timedelta(minutes=11))
        view = await until(handle, lambda v: v.assessments == 2)
        assert view.severity == "critical" and view.state == IncidentState.ACKNOWLEDGED
        assert sent.keys() == ["L0:ops-group", "up2:ops-group"]
        assert sent.requests[-1].kind == "upgraded" and sent.requests[-1].severity == "critical"
        # A later "no risk" neither lowers nor dismisses a notified incident.
        await _frames_every(handle, time_env, lambda i: make(i + 1), 1, timedelta(minutes=11))
        view = await until(handle, lambda v: v.assessments == 3)
    assert view.severity == "critical" and view.state == IncidentState.ACKNOWLEDGED
    assert view.closed_at is None and len(sent.requests) == 2


async def test_a_frame_not_yet_reassessed_survives_continue_as_new(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    config = IncidentConfig(
        escalation=LADDER[:1],
        reassess_every_seconds=600,
        max_history_events=100,
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, crowd(camera, 1), config)
        before = await until(handle, lambda v: v.assessments == 1 and v.steps_sent == ["L0"])
        await handle.signal(IncidentWorkflow.frame, crowd(camera, 2))
        await until(handle, lambda v: v.frames_seen == 2)  # taken: no longer pending
        for n in range(100):  # comments grow the history past 100 events: continue-as-new
            if (await view_of(handle)).run_id != before.run_id:
                break
            await handle.execute_update(
                IncidentWorkflow.comment, OperatorAction(by="li.wei", text=f"note {n}")
            )
        carried = await view_of(handle)
        assert carried.run_id != before.run_id and carried.assessments == 1
        await time_env.sleep(timedelta(minutes=11))
        view = await until(handle, lambda v: v.assessments == 2)
    assert view.incident_id == before.incident_id and _llm_assessments(view) == 2
    assert view.assessed_at is not None and view.assessed_at > before.opened_at
