"""Stand-ins for every activity `IncidentWorkflow` runs (registered under the real names), so
a test can hold or fail one step on cue and watch what the workflow does around it on
Temporal's own servers, without Valkey, Kafka or an LLM behind it. For the workflow's
interplay with Temporal (continue-as-new, handlers, tasks beside the loop, replay); the
activities themselves are tested against real services elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from devstack.simulate import scene_event
from riskflow.config.incidents import IncidentConfig
from riskflow.contracts.assessment import (
    AggregateResult,
    Assessment,
    AssessmentInput,
    AssessmentTask,
    RiskAnswer,
)
from riskflow.contracts.incidents import (
    IncidentFrame,
    IncidentGate,
    IncidentGateResult,
    IncidentRecord,
    IncidentStart,
    incident_workflow_id,
)
from riskflow.contracts.lease import (
    LeasedCallInput,
    LeasedCallOutput,
    LeaseRequest,
    LeaseResult,
    LLMCallOutput,
)
from riskflow.contracts.notifications import (
    NOTIFY_RATE_LIMITED,
    NotificationRequest,
    NotificationResult,
)
from workflows.assessment import RiskAssessmentWorkflow
from workflows.incident import IncidentWorkflow


class StandIns:
    """The activities. `llm_open` cleared holds every first attempt until it is set again;
    `slow_records` delays a record (seconds) whose events include that kind, and
    `record_started` is set when such a record begins; `pause` delays every call of an
    activity (by name); `answers` are the model's answers in turn; `no_key` makes every
    first attempt find no key, so the child assessment takes over, and its lease fails for
    good (the child fails); `throttled` channels answer "too fast, retry in 30 s" to every
    attempt."""

    def __init__(self) -> None:
        self.pause: dict[str, float] = {}
        self.llm_open = asyncio.Event()
        self.llm_open.set()
        self.slow_records: dict[str, float] = {}
        self.record_started: dict[str, asyncio.Event] = {}
        self.no_key = False
        self.answers: list[RiskAnswer] = []  # answered in turn, then "high" (a person down)
        self.throttled: set[str] = set()
        self.sent: list[NotificationRequest] = []
        self.refused: list[NotificationRequest] = []
        self.repeated: list[NotificationRequest] = []  # a key sent before: already_sent

    @activity.defn(name="incident_gate")
    async def gate(self, gate: IncidentGate) -> IncidentGateResult:
        return IncidentGateResult(admitted=True)

    @activity.defn(name="record_incident")
    async def record(self, record: IncidentRecord) -> bool:
        await asyncio.sleep(self.pause.get("record_incident", 0.0))
        kinds = {event.kind for event in record.events}
        for kind, seconds in self.slow_records.items():
            if kind in kinds:
                self.record_started.setdefault(kind, asyncio.Event()).set()
                await asyncio.sleep(seconds)
        return True

    @activity.defn(name="build_task")
    async def build_task(self, inp: AssessmentInput) -> AssessmentTask:
        await asyncio.sleep(self.pause.get("build_task", 0.0))
        return AssessmentTask(
            assessment_id=inp.assessment_id,
            camera_id=inp.event.camera_id,
            model="stand-in",
            system_prompt="",
            user_prompt="",
        )

    @activity.defn(name="lease_and_call_llm")
    async def lease_and_call(self, inp: LeasedCallInput) -> LeasedCallOutput:
        await self.llm_open.wait()
        if self.no_key:
            return LeasedCallOutput()
        answer = RiskAnswer(risk_level="high", risk_score=80, summary="a person on the floor")
        if self.answers:
            answer = self.answers.pop(0)
        return LeasedCallOutput(output=LLMCallOutput(answer=answer), key_id="k1")

    @activity.defn(name="acquire_lease")
    async def acquire_lease(self, request: LeaseRequest) -> LeaseResult:
        raise ApplicationError("the key pool refused the request", non_retryable=True)

    @activity.defn(name="aggregate")
    async def aggregate(self, assessment: Assessment) -> AggregateResult:
        await asyncio.sleep(self.pause.get("aggregate", 0.0))
        return AggregateResult(latest_updated=True, alerted=False, published=True)

    @activity.defn(name="notify")
    async def notify(self, request: NotificationRequest) -> NotificationResult:
        if request.channel in self.throttled:
            self.refused.append(request)
            raise ApplicationError(
                "too fast", type=NOTIFY_RATE_LIMITED, next_retry_delay=timedelta(seconds=30)
            )
        if any(r.idempotency_key == request.idempotency_key for r in self.sent):
            # As a real channel (its idempotency marker): one key is at most one message. An
            # attempt the server timed out and retried (a loaded machine, a time skip) is a
            # second attempt, not a second message.
            self.repeated.append(request)
            return NotificationResult(channel=request.channel, status="already_sent")
        self.sent.append(request)
        return NotificationResult(channel=request.channel, status="sent")

    def keys(self) -> list[str]:
        """The messages delivered, by idempotency key without the incident id."""
        return [r.idempotency_key.split(":", 1)[1] for r in self.sent]


@contextlib.asynccontextmanager
async def stand_in_worker(
    client: Client,
    task_queue: str,
    stand_ins: StandIns,
    incident: type = IncidentWorkflow,
    **options: Any,
) -> AsyncIterator[list[WorkflowHandle[Any, Any]]]:
    """A worker of both workflows over the stand-ins, sandboxed as the real one (`incident`:
    the incident workflow's class, a changed one registered under its name); yields the
    list of handles to terminate when it stops (shared servers keep no timers behind)."""
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "opentelemetry", "redis", "workflows"
        )
    )
    started: list[WorkflowHandle[Any, Any]] = []
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[incident, RiskAssessmentWorkflow],
        activities=[
            stand_ins.gate,
            stand_ins.record,
            stand_ins.build_task,
            stand_ins.lease_and_call,
            stand_ins.acquire_lease,
            stand_ins.aggregate,
            stand_ins.notify,
        ],
        workflow_runner=runner,
        **options,
    ):
        try:
            yield started
        finally:
            for handle in started:
                with contextlib.suppress(Exception):
                    await client.get_workflow_handle(handle.id).terminate("test over")


def crowd(camera: str, frame_id: int, people: int) -> IncidentFrame:
    event = scene_event(camera, frame_id, datetime.now(UTC), people=people, falls=0)
    return IncidentFrame(event=event, rule="crowd", severity=2, count=people)


def fall(camera: str, frame_id: int, captured_at: datetime | None = None) -> IncidentFrame:
    event = scene_event(camera, frame_id, captured_at or datetime.now(UTC), people=2, falls=1)
    return IncidentFrame(event=event, rule="fall", severity=5, count=1)


async def signal_with_start(
    client: Client,
    task_queue: str,
    frame: IncidentFrame,
    config: IncidentConfig,
    task_timeout: timedelta | None = None,
) -> WorkflowHandle[Any, Any]:
    """As the bridge does (`workers.bridge.incident_starts`): the camera's incident, started
    or signalled (`task_timeout`: the workflow task's, Temporal's 10 s when None)."""
    camera = frame.event.camera_id
    workflow_id = incident_workflow_id(camera, "hazard")
    start = IncidentStart(
        workflow_id=workflow_id,
        camera_id=camera,
        family="hazard",
        site_id="plant-a",
        timezone="UTC",
        config=config,
    )
    return await client.start_workflow(
        IncidentWorkflow.run,
        start,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal="frame",
        start_signal_args=[frame],
        task_timeout=task_timeout,
    )
