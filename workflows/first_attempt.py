"""An assessment's first attempt, inline in the workflow that needs it (the incident).

When it does not answer (no key now, Redis down, or the call failed), the caller runs the
full loop (`workflows.loop`) as the child `RiskAssessmentWorkflow`, which waits for keys on
durable timers, continues as new before its history grows, repairs and degrades, with the
attempt this one spent carried over (`CarriedState`). Pure workflow code.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.aggregate import AggregateActivities
    from activities.llm import LLMActivities
    from activities.task import TaskActivities
    from riskflow.contracts.assessment import (
        Assessment,
        AssessmentInput,
        CarriedState,
        FailedAttempt,
    )
    from riskflow.contracts.lease import LeasedCallInput
    from workflows.loop import assessment_of, budget_stop_reason, failure_of
    from workflows.policies import INFRA_RETRY, SINGLE_ATTEMPT


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
