"""RiskAssessmentWorkflow: build the task, lease a key, call the LLM, aggregate.

Pure workflow code: no I/O, no clocks but Temporal's. Retries of infrastructure calls
(Redis, Kafka) are activity retry policies; the LLM loop is here, because every attempt
needs a fresh lease (the key pool decides which key and when).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.aggregate import AggregateActivities
    from activities.lease import LeaseActivities
    from activities.llm import LLMActivities
    from activities.task import TaskActivities
    from riskflow import failure_kinds as E
    from riskflow.models import (
        Assessment,
        AssessmentInput,
        AssessmentStatus,
        AssessmentTask,
        KeyLease,
        LeaseRequest,
        LLMCallInput,
        LLMCallOutput,
        StageTiming,
    )
    from riskflow.prompt import class_counts

# Redis and Kafka: retried until they answer (a 30 s outage is waited out, nothing is lost).
INFRA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
# One LLM attempt per lease: the workflow decides what follows a failed one.
SINGLE_ATTEMPT = RetryPolicy(maximum_attempts=1)
NO_KEY_POLL = timedelta(seconds=30)  # when every key is disabled, look again this often
MAX_BACKOFF = 60.0
MAX_UNSENT_ROUNDS = 50  # leases whose key had no send slot in time


class _Failed(Exception):
    """The assessment cannot be made; the message is the reason recorded."""


@workflow.defn
class RiskAssessmentWorkflow:
    def __init__(self) -> None:
        self._status = AssessmentStatus(assessment_id="")
        self._result: Assessment | None = None
        self._key_waited = 0.0

    @workflow.query(name="status")
    def status(self) -> AssessmentStatus:
        return self._status

    @workflow.query(name="result")
    def result(self) -> Assessment | None:
        return self._result

    @workflow.run
    async def run(self, inp: AssessmentInput) -> Assessment:
        self._status = AssessmentStatus(assessment_id=inp.assessment_id)
        self._stage("building_task")
        # A local activity: one short Redis read with no side effect, run inside this
        # workflow task (a marker in history instead of a round trip through the server).
        task = await workflow.execute_local_activity_method(
            TaskActivities.build_task,
            inp,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=INFRA_RETRY,
        )
        try:
            output: LLMCallOutput | None = await self._assess(inp, task)
            reason = ""
        except _Failed as failed:
            output, reason = None, str(failed)
            workflow.logger.warning("assessment %s failed: %s", inp.assessment_id, reason)
        assessment = self._assessment(inp, task, output, reason)
        self._stage("aggregating")
        await workflow.execute_activity_method(
            AggregateActivities.aggregate,
            assessment,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=INFRA_RETRY,
        )
        self._result = assessment
        self._stage(assessment.status)
        return assessment

    def _stage(self, stage: str) -> None:
        now = workflow.now()
        timings = self._status.timings
        if timings and timings[-1].seconds is None:
            timings[-1].seconds = (now - timings[-1].started_at).total_seconds()
        self._status.stage = stage
        if stage not in ("assessed", "failed"):
            timings.append(StageTiming(stage=stage, started_at=now))

    async def _lease(self, inp: AssessmentInput) -> KeyLease | None:
        """A lease, or None after waiting durably for the time the pool named."""
        result = await workflow.execute_activity_method(
            LeaseActivities.acquire_lease,
            LeaseRequest(assessment_id=inp.assessment_id, ttl_seconds=inp.policy.lease_ttl_seconds),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=INFRA_RETRY,
        )
        if result.lease is not None:
            self._status.key_id = result.lease.key_id
            self._status.waiting_until = None
            return result.lease
        wait = (
            timedelta(seconds=result.retry_after_seconds)
            if result.retry_after_seconds > 0
            else NO_KEY_POLL
        )
        self._key_waited += wait.total_seconds()
        if self._key_waited > inp.policy.max_key_wait_seconds:
            raise _Failed(f"no API key available for {self._key_waited:.0f}s ({result.reason})")
        self._stage("waiting_for_key")
        self._status.key_waits += 1
        self._status.waiting_until = workflow.now() + wait
        await workflow.sleep(wait)
        return None

    async def _assess(self, inp: AssessmentInput, task: AssessmentTask) -> LLMCallOutput:
        """Lease, call, react; bounded by LLM attempts, key-wait time and lease rounds."""
        policy = inp.policy
        repair_of: str | None = None
        backoff = 1.0
        unsent_rounds = 0
        while True:
            lease = await self._lease(inp)
            if lease is None:
                continue
            self._stage("calling_llm")
            self._status.llm_attempts += 1
            call = LLMCallInput(task=task, lease=lease, repair_of=repair_of)
            try:
                return await workflow.execute_activity_method(
                    LLMActivities.call_llm,
                    call,
                    start_to_close_timeout=timedelta(seconds=policy.llm_timeout_seconds),
                    retry_policy=SINGLE_ATTEMPT,
                )
            except ActivityError as err:
                kind, detail = _failure(err)
            self._status.last_error = f"{kind}: {detail}"[:500]
            if kind in (E.KEY_BUSY, E.LEASE_LOST):
                self._status.llm_attempts -= 1  # nothing was sent
                unsent_rounds += 1
                if unsent_rounds > MAX_UNSENT_ROUNDS:
                    raise _Failed(f"no send slot after {unsent_rounds} leases: {detail}")
                continue
            if kind == E.MALFORMED_ANSWER and self._status.repairs < policy.max_repairs:
                self._status.repairs += 1
                repair_of = detail
                continue
            attempts = self._status.llm_attempts
            if kind in E.NON_RETRYABLE or attempts >= policy.max_llm_attempts:
                raise _Failed(f"after {attempts} LLM attempt(s): {kind}: {detail}"[:1000])
            if kind != E.RATE_LIMITED:  # a 429 cools its key down in the pool instead
                self._stage("backing_off")
                await workflow.sleep(timedelta(seconds=backoff))
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _assessment(
        self, inp: AssessmentInput, task: AssessmentTask, output: LLMCallOutput | None, reason: str
    ) -> Assessment:
        event = inp.event
        common = {
            "assessment_id": inp.assessment_id,
            "camera_id": event.camera_id,
            "situation": inp.situation,
            "captured_at": event.captured_at,
            "captured_ms": int(event.captured_at.timestamp() * 1000),
            "assessed_at": workflow.now(),
            "frame_id": event.frame_id,
            "key_id": self._status.key_id,
            "llm_attempts": self._status.llm_attempts,
            "detections": class_counts(event),
            "provenance": task.provenance,
        }
        if output is None:
            return Assessment(status="failed", failure_reason=reason, **common)
        answer = output.answer
        return Assessment(
            status="assessed",
            risk_level=answer.risk_level,
            risk_score=answer.risk_score,
            summary=answer.summary,
            hazards=answer.hazards,
            recommended_actions=answer.recommended_actions,
            adjustments=answer.adjustments,
            **common,
        )


def _failure(err: ActivityError) -> tuple[str, str]:
    """The error type the activity raised (or a timeout), and its detail."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        kind = cause.type or E.PROVIDER_ERROR
        if kind == E.MALFORMED_ANSWER and cause.details:
            return kind, str(cause.details[0])
        return kind, cause.message
    return E.PROVIDER_ERROR, f"{type(cause).__name__}: {cause}"
