"""The alarm never waits and never freezes (IncidentWorkflow after the `alarm-first` patch), on
Temporal's time-skipping server with a real worker (real Valkey and the local DashScope server
behind the assessments). Every time asserted is workflow time (the server's clock), never the
test's: what is checked is order and the ladder's own arithmetic."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from redis.asyncio import Redis
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from riskflow.config.incidents import EscalationStep, IncidentConfig, QuietPeriod
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import IncidentState, OperatorAction
from riskflow.contracts.notifications import (
    NOTIFY_RATE_LIMITED,
    NOTIFY_REJECTED,
    NotificationRequest,
    NotificationResult,
)
from riskflow.infra.endpoints import Endpoints
from tests.conftest import DashScopeAdmin, eventually
from tests.test_incident_temporal import level_0
from tests.test_incident_workflow import (
    QUIET_CHECK,
    Recorder,
    crowd,
    fall,
    open_incident,
    until,
    view_of,
    worker_with,
)
from workflows.incident import IncidentWorkflow


class Channels(Recorder):
    """The `notify` activity of these tests: `failing` channels answer "rate limited, retry in
    120 s" to every attempt, `rejecting` ones refuse for good (bad configuration); the others
    record the request with the server time it was scheduled at."""

    def __init__(
        self,
        failing: set[str] | None = None,
        rejecting: set[str] | None = None,
        refuse_when: asyncio.Event | None = None,
    ) -> None:
        super().__init__()
        self.failing = failing or set()
        self.rejecting = rejecting or set()
        self.refuse_when = refuse_when  # rejecting channels answer only once it is set
        self.delivered: list[tuple[NotificationRequest, datetime]] = []
        self.refused: list[tuple[str, datetime]] = []  # step:channel, scheduled at

    @activity.defn(name="notify")
    async def notify(self, request: NotificationRequest) -> NotificationResult:
        at = activity.info().current_attempt_scheduled_time
        if request.channel in self.rejecting:
            if self.refuse_when is not None:
                await self.refuse_when.wait()
            self.refused.append((request.idempotency_key.split(":", 1)[1], at))
            raise ApplicationError("invalid webhook", type=NOTIFY_REJECTED, non_retryable=True)
        if request.channel in self.failing:
            self.refused.append((request.idempotency_key.split(":", 1)[1], at))
            raise ApplicationError(
                "429: send too fast",
                type=NOTIFY_RATE_LIMITED,
                next_retry_delay=timedelta(seconds=120),
            )
        self.delivered.append((request, at))
        return NotificationResult(channel=request.channel, status="sent")

    def keys(self) -> list[str]:
        return [r.idempotency_key.split(":", 1)[1] for r, _ in self.delivered]

    def told(self, channel: str, step: str = "") -> Callable[[], Awaitable[bool]]:
        """A predicate for `eventually`: `channel` received a message (of `step`, when given)."""

        async def delivered() -> bool:
            return any(
                r.channel == channel
                and (not step or r.idempotency_key.endswith(f":{step}:{channel}"))
                for r, _ in self.delivered
            )

        return delivered

    def told_now(self, channel: str) -> bool:
        return any(r.channel == channel for r, _ in self.delivered)

    def first(self, key: str) -> tuple[NotificationRequest, datetime]:
        return next((r, at) for r, at in self.delivered if r.idempotency_key.endswith(key))


def alarm_worker(
    client: Client, settings: Settings, stack: Endpoints, task_queue: str, channels: Channels
) -> contextlib.AbstractAsyncContextManager[Channels]:
    return worker_with(channels, client, settings, stack, task_queue)


async def test_the_provider_down_delays_no_alarm_and_the_assessment_follows(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """Every provider call answers 500: level 0 is told when `notify_within_seconds` have
    passed, with the detector's facts, the assessment pending."""
    await dashscope_admin.faults(rate_5xx=1.0)
    config = level_0("ops-group", notify_within_seconds=3)
    camera = f"cam-{unique}"
    channels = Channels()
    async with alarm_worker(time_env.client, settings, stack, task_queue, channels):
        handle = await open_incident(channels, time_env.client, task_queue, fall(camera, 1), config)
        view = await until(handle, lambda v: v.steps_sent == ["L0"])
        request, _ = channels.first(":L0:ops-group")
        assert request.assessment_pending and request.detected == "fall: 1 detection(s)"
        assert request.severity == "high" and request.kind == "opened"
        assert view.state == IncidentState.NOTIFIED
        # Told before any assessment ended (how soon, in seconds, is bench/incidents' figure).
        kinds = [entry.kind for entry in view.timeline]
        assert kinds.index("notified") < [*kinds, "assessed"].index("assessed")


async def test_a_healthy_assessment_is_in_the_first_message(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    config = level_0("ops-group")
    """A rule below life-safety (a crowd) waits up to `notify_within_seconds` for the model:
    a healthy answer is in the first message."""
    channels = Channels()
    async with alarm_worker(time_env.client, settings, stack, task_queue, channels):
        frame = crowd(f"cam-{unique}", 1, people=9)
        handle = await open_incident(channels, time_env.client, task_queue, frame, config)
        await until(handle, lambda v: v.steps_sent == ["L0"])
        request, _ = channels.first(":L0:ops-group")
    assert not request.assessment_pending and request.summary
    assert channels.keys() == ["L0:ops-group"]  # one message, not an alarm and an update


async def test_a_fall_is_told_before_the_model_is_asked(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """A life-safety rule with a healthy model: level 0 is scheduled in the incident's first
    workflow task (before the LLM activity), says what the detector saw, and the assessment
    follows as an update to the same channel."""
    config = level_0("ops-group")
    channels = Channels()
    async with alarm_worker(time_env.client, settings, stack, task_queue, channels):
        frame = fall(f"cam-{unique}", 1)
        handle = await open_incident(channels, time_env.client, task_queue, frame, config)
        view = await until(handle, lambda v: v.assessments == 1 and len(channels.keys()) == 2)
        history = await handle.fetch_history()
    request, _ = channels.first(":L0:ops-group")
    assert request.assessment_pending and request.detected == "fall: 1 detection(s)"
    assert channels.keys() == ["L0:ops-group", "a1:ops-group"]
    update, _ = channels.first(":a1:ops-group")
    assert update.kind == "assessed" and update.summary and not update.assessment_pending
    kinds = [entry.kind for entry in view.timeline]
    assert kinds.index("notified") < kinds.index("assessed")
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled[:2] == ["notify", "lease_and_call_llm"]  # the alarm's send goes first
    # Between the gate (the incident's first local activity) and level 0's send nothing was
    # waited for: no activity ended, no timer fired (a workflow task may end between them
    # when the SDK heartbeats a task that runs local activities).
    gate = next(
        i
        for i, e in enumerate(history.events)
        if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    )
    send = next(
        i
        for i, e in enumerate(history.events)
        if e.activity_task_scheduled_event_attributes.activity_type.name == "notify"
    )
    waited = ("activity_task_completed_event_attributes", "timer_fired_event_attributes")
    assert not any(e.HasField(field) for e in history.events[gate:send] for field in waited)


async def test_a_throttled_channel_delays_no_other_channel_and_no_level(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    task_queue: str,
    unique: str,
) -> None:
    """On the dev server, in real time: ops-group answers 429 (retry in 120 s) to every
    attempt; shift-lead, on the same level, is told, and level 1 (due 2 s later) is told too,
    while ops-group has had its first attempt only: nothing waited for it."""
    config = IncidentConfig(
        escalation=[
            EscalationStep(after_seconds=0, channels=["ops-group", "shift-lead"]),
            EscalationStep(after_seconds=2, channels=["site-manager"]),
        ],
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    channels = Channels(failing={"ops-group"})
    async with alarm_worker(client, settings, stack, task_queue, channels):
        frame = fall(f"c-{unique}", 1)
        handle = await open_incident(channels, client, task_queue, frame, config)
        await until(handle, lambda v: "L1" in v.steps_sent)

        await eventually(channels.told("site-manager"))
        ladder = [r.channel for r, _ in channels.delivered if r.kind != "assessed"]
        assert sorted(ladder) == ["shift-lead", "site-manager"]
        # One attempt of each message to ops-group (the alarm, and the assessment that
        # followed it if it was ready by now): no retry yet, nothing waited for them.
        refused = [key for key, _ in channels.refused]
        assert refused[0] == "L0:ops-group" and len(refused) == len(set(refused))


async def test_a_channel_that_fails_for_good_is_recorded_and_its_fallback_told(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    task_queue: str,
    unique: str,
) -> None:
    config = IncidentConfig(
        escalation=[
            EscalationStep(
                after_seconds=0, channels=["ops-group", "shift-lead"], fallback_channels=["mail"]
            )
        ],
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    channels = Channels(rejecting={"ops-group"})
    async with alarm_worker(client, settings, stack, task_queue, channels):
        frame = fall(f"f-{unique}", 1)
        handle = await open_incident(channels, client, task_queue, frame, config)
        view = await until(
            handle, lambda v: any("ops-group failed" in e.detail for e in v.timeline)
        )

        await eventually(channels.told("mail"))
        fallback, _ = channels.first(":L0:ops-group:fallback:mail")
    assert fallback.kind == "opened" and view.state == IncidentState.NOTIFIED
    level_0 = [r.channel for r, _ in channels.delivered if ":L0:" in r.idempotency_key]
    assert sorted(level_0) == ["mail", "shift-lead"]


@pytest.mark.parametrize("acknowledged", [False, True])
async def test_a_fallback_tells_the_incident_as_it_is_now(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    task_queue: str,
    unique: str,
    acknowledged: bool,
) -> None:
    """A channel whose send fails for good only after the model has answered (its answer
    held until then): its fallback says what the incident is by then, the assessment in,
    not the first alarm's "assessment pending"; and when somebody has acknowledged it
    meanwhile, no fallback goes at all (a trial's mail fallback said "new incident, open"
    about an incident resolved minutes before)."""
    config = IncidentConfig(
        escalation=[
            EscalationStep(
                after_seconds=0, channels=["ops-group", "shift-lead"], fallback_channels=["mail"]
            )
        ],
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    answer = asyncio.Event()
    channels = Channels(rejecting={"ops-group"}, refuse_when=answer)
    async with alarm_worker(client, settings, stack, task_queue, channels):
        frame = fall(f"fb-{unique}", 1)
        handle = await open_incident(channels, client, task_queue, frame, config)
        await until(handle, lambda v: v.assessments == 1)
        if acknowledged:
            await handle.execute_update(IncidentWorkflow.ack, OperatorAction(by="li.wei"))
        answer.set()
        view = await until(
            handle,
            lambda v: (
                any(e.detail.startswith("ops-group failed") for e in v.timeline)
                and (not acknowledged or any("fallback not sent" in e.detail for e in v.timeline))
            ),
        )
        if not acknowledged:

            async def fallback_told() -> bool:
                return any(
                    r.idempotency_key.endswith(":L0:ops-group:fallback:mail")
                    for r, _ in channels.delivered
                )

            await eventually(fallback_told)
    first, _ = channels.first(":L0:shift-lead")
    assert first.assessment_pending  # the alarm went before the model answered
    if acknowledged:
        assert not channels.told_now("mail")
        assert any(e.detail == "fallback not sent: acknowledged" for e in view.timeline)
    else:
        fallback, _ = channels.first(":L0:ops-group:fallback:mail")
        assert not fallback.assessment_pending and fallback.summary


async def test_a_fall_in_a_crowd_incident_is_told_at_once_to_every_level_reached(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """On the dev server: a crowd incident told at levels 0 and 1, then a fall in the same
    scene: the upgrade goes to every level reached at once, before any reassessment answers
    (the provider is down), and the severity never drops below a fall's."""
    config = IncidentConfig(
        escalation=[
            EscalationStep(after_seconds=0, channels=["ops-group"]),
            EscalationStep(after_seconds=2, channels=["shift-lead"]),
        ],
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    camera = f"cam-{unique}"
    channels = Channels()
    async with alarm_worker(client, settings, stack, task_queue, channels):
        handle = await open_incident(channels, client, task_queue, crowd(camera, 1), config)
        await until(handle, lambda v: v.steps_sent == ["L0", "L1"] and v.assessments == 1)
        assert (await view_of(handle)).severity == "medium"
        await dashscope_admin.faults(rate_5xx=1.0)
        await handle.signal(IncidentWorkflow.frame, fall(camera, 2))
        view = await until(handle, lambda v: v.severity == "high" and v.rule == "fall")

        async def both_told() -> bool:
            return len(channels.delivered) >= 4

        await eventually(both_told)
        upgrades = sorted((r.channel, r.kind, r.severity) for r, _ in channels.delivered[2:])
    assert upgrades == [("ops-group", "upgraded", "high"), ("shift-lead", "upgraded", "high")]
    assert view.rule == "fall" and view.rule_severity == 5


async def test_an_upgrade_before_any_assessment_counts_the_new_rules_own_detections(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """The provider down from the start: a crowd of nine is told as detected, then one fall
    in the scene is told as "fall: 1", not as the crowd's nine (a trial read "fall: 6")."""
    config = level_0("ops-group")
    camera = f"cam-{unique}"
    channels = Channels()
    await dashscope_admin.faults(rate_5xx=1.0)
    async with alarm_worker(client, settings, stack, task_queue, channels):
        handle = await open_incident(channels, client, task_queue, crowd(camera, 1, 9), config)
        await until(handle, lambda v: v.steps_sent == ["L0"])
        await handle.signal(IncidentWorkflow.frame, fall(camera, 2))
        await until(handle, lambda v: v.rule == "fall")

        async def upgrade_told() -> bool:
            return any(r.kind == "upgraded" for r, _ in channels.delivered)

        await eventually(upgrade_told)
    told = {r.kind: r.detected for r, _ in channels.delivered}
    assert told["opened"] == "crowd: 9 detection(s)"
    assert told["upgraded"] == "fall: 1 detection(s)"


async def test_quiet_hours_never_hold_a_fall(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """Quiet all day, holding everything below critical; the LLM calls the fall medium: a
    life-safety rule is told anyway."""
    await dashscope_admin.faults(
        script=[
            {
                "content": '{"risk_level": "medium", "risk_score": 50, '
                '"summary": "someone sitting on the floor"}'
            }
        ]
    )
    always = QuietPeriod(start=datetime.min.time(), end=datetime.min.time())
    config = level_0("ops-group", quiet_hours=[always], quiet_hours_hold_below="critical")
    channels = Channels()
    async with alarm_worker(time_env.client, settings, stack, task_queue, channels):
        handle = await open_incident(
            channels, time_env.client, task_queue, fall(f"q-{unique}", 1), config
        )
        view = await until(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)

        await eventually(channels.told("ops-group", "a1"))
    # The alarm and the assessment that followed it: neither held.
    assert view.held == [] and channels.keys() == ["L0:ops-group", "a1:ops-group"]


async def test_a_dismissed_crowd_does_not_hide_a_fall(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """An operator dismisses a crowd incident (a cooldown of an hour); a fall on the same
    camera a minute later opens a new incident, and is told."""
    config = level_0("ops-group", dismissed_cooldown_seconds=3600)
    camera = f"cam-{unique}"
    channels = Channels()
    async with alarm_worker(time_env.client, settings, stack, task_queue, channels):
        handle = await open_incident(
            channels, time_env.client, task_queue, crowd(camera, 1), config
        )
        await until(handle, lambda v: v.steps_sent == ["L0"])
        await handle.execute_update(IncidentWorkflow.dismiss, OperatorAction(by="li.wei"))
        await handle.result()
        another_crowd = await open_incident(
            channels, time_env.client, task_queue, crowd(camera, 2), config
        )
        assert await another_crowd.result() is None  # the cooldown holds for the same rule
        handle = await open_incident(channels, time_env.client, task_queue, fall(camera, 3), config)
        view = await until(handle, lambda v: v.steps_sent == ["L0"])
    assert view.rule == "fall" and view.state == IncidentState.NOTIFIED


async def test_after_an_outage_the_ladder_says_once_what_was_missed(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    task_queue: str,
    unique: str,
) -> None:
    """On the dev server: no worker for longer than the whole ladder of an open incident;
    when one is back, one message at the highest step due (not each step in a burst)."""
    config = IncidentConfig(
        escalation=[
            EscalationStep(after_seconds=0, channels=["ops-group"]),
            EscalationStep(after_seconds=2, channels=["shift-lead"]),
            EscalationStep(after_seconds=4, channels=["site-manager"]),
        ],
        repeat_seconds=2,
        max_repeats=2,
        auto_resolve_after_seconds=QUIET_CHECK,
    )
    channels = Channels()
    async with alarm_worker(client, settings, stack, task_queue, channels):
        frame = fall(f"o-{unique}", 1)
        handle = await open_incident(channels, client, task_queue, frame, config)
        await until(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)

        await eventually(channels.told("ops-group", "a1"))
        channels.started.clear()  # the incident stays open while no worker runs
    await asyncio.sleep(10)  # longer than the ladder (8 s): every step is due when it is back
    async with alarm_worker(client, settings, stack, task_queue, channels):
        channels.started.append(handle)
        view = await until(handle, lambda v: "L2r2" in v.steps_sent)
    assert channels.keys() == ["L0:ops-group", "a1:ops-group", "L2r2:site-manager"]
    assert any("caught up: L1, L2, L2r1 not sent" in e.detail for e in view.timeline)


async def test_a_fall_is_told_while_redis_is_stalled(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    task_queue: str,
    unique: str,
) -> None:
    """On the dev server, Redis stopped (SIGSTOP: every call times out) before a fall: the
    gate admits the frame unchecked and level 0 is told while Redis is still stopped; the
    assessment, which needs Redis for its key, follows once it is back."""
    config = level_0("ops-group")
    pid = int((settings.local.state_dir / "pids" / "redis.pid").read_text())
    channels = Channels()
    async with alarm_worker(client, settings, stack, task_queue, channels):
        os.kill(pid, signal.SIGSTOP)
        try:
            frame = fall(f"cam-{unique}", 1)
            handle = await open_incident(channels, client, task_queue, frame, config)

            async def told() -> bool:
                return bool(channels.keys())

            await eventually(told, within=90)
        finally:
            os.kill(pid, signal.SIGCONT)
        view = await until(handle, lambda v: v.assessments == 1)
    request, _ = channels.first(":L0:ops-group")
    assert request.assessment_pending and request.kind == "opened"
    assert view.severity == "high"
