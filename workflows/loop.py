"""The assessment loop, the one door to an LLM assessment for every workflow that needs one:
lease a key, call, repair a malformed answer, degrade after a moderation refusal, fail over
along the chain, wait for keys on durable timers, back off, give up with a reason.

- `AssessmentLoop.assess`: the whole loop (`RiskAssessmentWorkflow`, `ReplayAssessmentWorkflow`).
- `first_attempt`: one attempt inline, for the incident; when it does not answer, the
  caller runs the loop as a child with what the attempt spent carried over (`CarriedState`).
- `assessment_of`: the `Assessment` an outcome makes.

Pure workflow code: no I/O, no clock but Temporal's; the retry policies are `workflows.policies`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.aggregate import AggregateActivities
    from activities.lease import LeaseActivities
    from activities.llm import LLMActivities
    from activities.task import TaskActivities
    from riskflow.config.capacity import FailoverStep
    from riskflow.contracts import failures as E
    from riskflow.contracts.assessment import (
        Assessment,
        AssessmentInput,
        AssessmentStatus,
        AssessmentTask,
        CarriedState,
        FailedAttempt,
        Provenance,
        StageTiming,
    )
    from riskflow.contracts.lease import (
        KeyLease,
        LeasedCallInput,
        LeaseRequest,
        LLMCallInput,
        LLMCallOutput,
    )
    from riskflow.llm_text.prompt import class_counts
    from workflows.policies import (
        INFRA_RETRY,
        KEY_WAIT_JITTER,
        MAX_BACKOFF,
        MAX_UNSENT_ROUNDS,
        SINGLE_ATTEMPT,
    )


class AssessmentFailed(Exception):
    """The assessment cannot be made; the message is the reason recorded."""


ContinueAsNew = Callable[[CarriedState], NoReturn]


class AssessmentLoop:
    """One assessment's loop and its state (`status` is what the workflow's query shows).
    `continue_as_new` is called, with what the loop has spent, once the history is long
    while waiting for a key; it does not return."""

    def __init__(self, assessment_id: str, continue_as_new: ContinueAsNew) -> None:
        self.status = AssessmentStatus(assessment_id=assessment_id)
        self._continue_as_new = continue_as_new
        self._key_waited = 0.0
        self._next_key_wait = 0.0
        self._runs = 1
        self._free_rounds = 0
        self._repair_of: str | None = None
        self._without_history = False
        self._text_only = False
        self._step = 0  # the failover chain's entry in use (task.failover)
        self._step_waited = 0.0

    def stage(self, stage: str) -> None:
        now = workflow.now()
        timings = self.status.timings
        if timings and timings[-1].seconds is None:
            timings[-1].seconds = (now - timings[-1].started_at).total_seconds()
        self.status.stage = stage
        if stage not in ("assessed", "failed"):
            timings.append(StageTiming(stage=stage, started_at=now))

    def resume(self, carried: CarriedState | None) -> None:
        if carried is not None:
            self.status.llm_attempts = carried.llm_attempts
            self.status.repairs = carried.repairs
            self.status.key_waits = carried.key_waits
            self._key_waited = carried.key_waited_seconds
            self._runs = carried.runs
            self._free_rounds = carried.free_rounds
            self._without_history = carried.without_history
            self._text_only = carried.text_only
            self._step = carried.failover_step

    async def outcome(
        self, inp: AssessmentInput, task: AssessmentTask
    ) -> tuple[LLMCallOutput | None, str]:
        """The loop's answer, or None and the reason it failed."""
        try:
            return await self.assess(inp, task), ""
        except AssessmentFailed as failed:
            workflow.logger.warning("assessment %s failed: %s", inp.assessment_id, failed)
            return None, str(failed)

    async def assess(self, inp: AssessmentInput, task: AssessmentTask) -> LLMCallOutput:
        """Lease, call, react; bounded by LLM attempts, key-wait time and lease rounds. An
        attempt made before this workflow (`CarriedState.failed_attempt`) is reacted to first,
        as if it were its own: a repair, a degraded prompt, a backoff or the end. Raises
        `AssessmentFailed`."""
        backoff = 1.0
        failed = inp.carried.failed_attempt if inp.carried is not None else None
        if failed is not None:
            self.status.last_error = f"{failed.kind}: {failed.detail}"[:500]
            if self._react(inp, task, failed.kind, failed.detail):
                await workflow.sleep(timedelta(seconds=backoff))
                backoff *= 2
        while True:
            lease = await self._lease(inp, task)
            if lease is None:
                continue
            self.stage("calling_llm")
            self.status.llm_attempts += 1
            call = LLMCallInput.for_step(
                task,
                lease,
                self._entry(task),
                repair_of=self._repair_of,
                without_history=self._without_history,
                text_only=self._text_only,
            )
            try:
                return await workflow.execute_activity_method(
                    LLMActivities.call_llm,
                    call,
                    start_to_close_timeout=timedelta(seconds=inp.policy.llm_timeout_seconds),
                    retry_policy=SINGLE_ATTEMPT,
                )
            except ActivityError as err:
                kind, detail = failure_of(err)
            self.status.last_error = f"{kind}: {detail}"[:500]
            if self._react(inp, task, kind, detail):
                self.stage("backing_off")
                await workflow.sleep(timedelta(seconds=backoff))
                backoff = min(backoff * 2, MAX_BACKOFF)

    def assessment(
        self, inp: AssessmentInput, task: AssessmentTask, output: LLMCallOutput | None, reason: str
    ) -> Assessment:
        """The assessment this loop made: degraded when a later entry of the failover chain,
        or an over-budget fallback, answered."""
        status = self.status
        degraded = output is not None and (self._step > 0 or bool(task.over_budget))
        return assessment_of(
            inp, task, output, reason, status.key_id, status.llm_attempts, degraded
        )

    def _entry(self, task: AssessmentTask) -> FailoverStep | None:
        return task.failover[self._step] if task.failover else None

    def _continue_if_long(self, inp: AssessmentInput) -> None:
        """Continue as new while waiting for a key once the history is large (Temporal's
        suggestion, or the policy's event budget): a wait of any length stays bounded."""
        info = workflow.info()
        if not (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= inp.policy.history_event_budget
        ):
            return
        self._continue_as_new(
            CarriedState(
                llm_attempts=self.status.llm_attempts,
                repairs=self.status.repairs,
                key_waits=self.status.key_waits,
                key_waited_seconds=self._key_waited,
                runs=self._runs + 1,
                free_rounds=self._free_rounds,
                without_history=self._without_history,
                text_only=self._text_only,
                failover_step=self._step,
            )
        )

    def _key_wait(self, inp: AssessmentInput, retry_after_seconds: float, reason: str) -> timedelta:
        """How long to wait for a key, stretched by up to `KEY_WAIT_JITTER` (the workflow's
        deterministic random) so waiting workflows do not wake together. The pool's time is
        exact for a cooldown or a rate window: at least the policy's minimum. For a full
        concurrency it is a guess (a release may come sooner): a minimum that doubles with each
        consecutive wait, up to the policy's longest. Every key disabled: the longest."""
        policy = inp.policy
        floor = policy.min_key_wait_seconds
        if retry_after_seconds < 0:
            floor = policy.max_key_poll_seconds
        elif reason == "concurrency":
            floor = max(self._next_key_wait, floor)
            self._next_key_wait = min(floor * 2, policy.max_key_poll_seconds)
        stretch = 1 + KEY_WAIT_JITTER * workflow.random().random()
        return timedelta(seconds=max(retry_after_seconds, floor) * stretch)

    async def _lease(self, inp: AssessmentInput, task: AssessmentTask) -> KeyLease | None:
        """A lease, or None after waiting durably (see `_key_wait`) or moving to the next
        entry of the failover chain."""
        request = LeaseRequest.for_step(
            inp.assessment_id, task, self._entry(task), inp.policy.lease_ttl_seconds
        )
        result = await workflow.execute_activity_method(
            LeaseActivities.acquire_lease,
            request,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=INFRA_RETRY,
        )
        if result.lease is not None:
            self.status.key_id = result.lease.key_id
            self.status.waiting_until = None
            self._next_key_wait = 0.0
            return result.lease
        if self._fail_over(task, result.retry_after_seconds):
            return None
        wait = self._key_wait(inp, result.retry_after_seconds, result.reason)
        self._step_waited += wait.total_seconds()
        self._key_waited += wait.total_seconds()
        if self._key_waited > inp.policy.max_key_wait_seconds:
            raise AssessmentFailed(
                f"no API key available for {self._key_waited:.0f}s ({result.reason})"
            )
        self.stage("waiting_for_key")
        self.status.key_waits += 1
        self.status.waiting_until = workflow.now() + wait
        await workflow.sleep(wait)
        self._continue_if_long(inp)
        return None

    def _fail_over(self, task: AssessmentTask, retry_after_seconds: float) -> bool:
        """Move to the chain's next entry when this entry's keys are all disabled
        (`retry_after_seconds` < 0) or free later than its `max_wait_seconds` allows."""
        if self._step + 1 >= len(task.failover):
            return False
        step = task.failover[self._step]
        later = self._step_waited + max(retry_after_seconds, 0.0) > step.max_wait_seconds
        if retry_after_seconds >= 0 and not later:
            return False
        workflow.logger.info(
            "assessment %s fails over to entry %d", task.assessment_id, self._step + 1
        )
        self._step += 1
        self._step_waited = 0.0
        self._next_key_wait = 0.0
        return True

    def _react(self, inp: AssessmentInput, task: AssessmentTask, kind: str, detail: str) -> bool:
        """What follows a failed call: raise `AssessmentFailed`, or True to back off before
        the next lease, False to lease again at once."""
        if kind in E.NOT_AN_ATTEMPT:  # nothing the event did: 429s, refused accounts, no slot
            self.status.llm_attempts -= 1
            self._free_rounds += 1
            if self._free_rounds > MAX_UNSENT_ROUNDS:
                raise AssessmentFailed(
                    f"no usable key after {self._free_rounds} leases: {kind}: {detail}"
                )
            return False
        if kind == E.MALFORMED_ANSWER and self.status.repairs < inp.policy.max_repairs:
            self.status.repairs += 1
            self._repair_of = detail
            return False
        if kind == E.CONTENT_REJECTED and self._degrade(task):
            return False
        if kind == E.IMAGE_UNAVAILABLE and not self._text_only:
            self._text_only = True  # the image cannot be read: assess the detections alone
            return False
        attempts = self.status.llm_attempts
        if kind in E.NON_RETRYABLE or kind == E.IMAGE_UNAVAILABLE:
            raise AssessmentFailed(f"after {attempts} LLM attempt(s): {kind}: {detail}"[:1000])
        if attempts >= inp.policy.max_llm_attempts:
            raise AssessmentFailed(f"after {attempts} LLM attempt(s): {kind}: {detail}"[:1000])
        return True

    def _degrade(self, task: AssessmentTask) -> bool:
        """After a moderation refusal: once without the camera's history (if the prompt had
        any), then once text-only (if it had an image); False when nothing is left to drop."""
        if not self._without_history and task.user_prompt_without_history is not None:
            self._without_history = True
            return True
        if not self._text_only and task.image_ref:
            self._text_only = True
            return True
        return False


async def first_attempt(inp: AssessmentInput) -> tuple[Assessment | None, CarriedState]:
    """One attempt inline: build the task (a local activity: one Redis read), lease + stamp
    + call + release (one activity, `lease_and_call_llm`: the lease lives only inside it),
    aggregate (a local activity: idempotent per assessment id). Two workflow tasks and one
    activity, where the child `RiskAssessmentWorkflow` costs a child start and completion,
    four workflow tasks and three activities. The aggregated assessment, or None and what
    the attempt spent, for the full loop (no key now, Redis down, or the call failed)."""
    task = await workflow.execute_local_activity_method(
        TaskActivities.build_task,
        inp,
        start_to_close_timeout=timedelta(seconds=10),
        retry_policy=INFRA_RETRY,
    )
    if task.budget_stop:  # the site's budget is spent and it stops calling: recorded as such
        return await _aggregated(assessment_of(inp, task, None, budget_stop_reason(task), "", 0))
    try:
        result = await workflow.execute_activity_method(
            LLMActivities.lease_and_call,
            LeasedCallInput(
                assessment_id=inp.assessment_id,
                task=task,
                ttl_seconds=inp.policy.lease_ttl_seconds,
            ),
            start_to_close_timeout=timedelta(seconds=inp.policy.llm_timeout_seconds),
            retry_policy=SINGLE_ATTEMPT,
        )
    except ActivityError as err:
        kind, detail = failure_of(err)
        workflow.logger.info("first attempt of %s: %s: %s", inp.assessment_id, kind, detail)
        # The full loop reacts to it as to its own attempt (and gives back a free one).
        failed = FailedAttempt(kind=kind, detail=detail)
        return None, CarriedState(llm_attempts=1, failed_attempt=failed)
    if result.output is None:  # no key now: the full loop waits for one
        return None, CarriedState()
    degraded = bool(task.over_budget)
    return await _aggregated(
        assessment_of(inp, task, result.output, "", result.key_id, 1, degraded)
    )


async def _aggregated(assessment: Assessment) -> tuple[Assessment, CarriedState]:
    await workflow.execute_local_activity_method(
        AggregateActivities.aggregate,
        assessment,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=INFRA_RETRY,
    )
    return assessment, CarriedState()


def budget_stop_reason(task: AssessmentTask) -> str:
    """Why an over-budget site's assessment made no call (`on_exhausted: stop`)."""
    return f"not assessed: site budget exhausted ({task.over_budget})"


def assessment_of(
    inp: AssessmentInput,
    task: AssessmentTask,
    output: LLMCallOutput | None,
    reason: str,
    key_id: str,
    llm_attempts: int,
    degraded: bool = False,
) -> Assessment:
    """The assessment of `inp`: `output`'s answer, or `failed` with `reason` when None;
    `degraded` when a later entry of the failover chain, or an over-budget fallback, answered."""
    event = inp.event
    common = {
        "assessment_id": inp.assessment_id,
        "camera_id": event.camera_id,
        "situation": inp.situation,
        "captured_at": event.captured_at,
        "captured_ms": int(event.captured_at.timestamp() * 1000),
        "assessed_at": workflow.now(),
        "frame_id": event.frame_id,
        "key_id": key_id,
        "llm_attempts": llm_attempts,
        "detections": class_counts(event),
        "provenance": _provenance(task, output),
        "degraded": degraded,
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


def _provenance(task: AssessmentTask, output: LLMCallOutput | None) -> Provenance:
    """The task's provenance, with the model that really answered and the snapshot only when
    it was sent (a text-only fallback answers with the text model and no image)."""
    if output is None or not output.model:
        return task.provenance
    image_ref = task.provenance.image_ref if output.image_sent else None
    update = {"model": output.model, "image_ref": image_ref}
    if output.provider:  # the provider that answered (older workers left it empty)
        update["provider"] = output.provider
    return task.provenance.model_copy(update=update)


def failure_of(err: ActivityError) -> tuple[str, str]:
    """The error type the activity raised (or a timeout), and its detail."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        kind = cause.type or E.PROVIDER_ERROR
        if kind == E.MALFORMED_ANSWER and cause.details:
            return kind, str(cause.details[0])
        return kind, cause.message
    return E.PROVIDER_ERROR, f"{type(cause).__name__}: {cause}"


class LoopQueries:
    """The `status` and `result` queries of a workflow that runs an `AssessmentLoop` (the
    live assessment and its replay answer them alike); the workflow sets `_loop` when it
    starts and `_result` when it has one."""

    def __init__(self) -> None:
        self._loop: AssessmentLoop | None = None
        self._result: Assessment | None = None

    @workflow.query(name="status")
    def status(self) -> AssessmentStatus:
        return self._loop.status if self._loop else AssessmentStatus(assessment_id="")

    @workflow.query(name="result")
    def result(self) -> Assessment | None:
        return self._result
