"""RiskAssessmentWorkflow: build the task, run the assessment loop (`workflows.loop`: lease a
key, call the LLM, repair, degrade, wait), aggregate.

Pure workflow code: no I/O, no clocks but Temporal's. Retries of infrastructure calls
(Redis, Kafka) are activity retry policies (`workflows.policies`); the LLM loop is in the
workflow, because every attempt needs a fresh lease (the key pool decides which key and when).
"""

from __future__ import annotations

from datetime import timedelta
from typing import NoReturn

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.aggregate import AggregateActivities
    from activities.task import TaskActivities
    from riskflow.contracts.assessment import (
        Assessment,
        AssessmentInput,
        CarriedState,
    )
    from riskflow.contracts.lease import LLMCallOutput
    from workflows.loop import AssessmentLoop, LoopQueries, budget_stop_reason
    from workflows.policies import INFRA_RETRY


@workflow.defn
class RiskAssessmentWorkflow(LoopQueries):
    @workflow.run
    async def run(self, inp: AssessmentInput) -> Assessment:
        def continue_as_new(carried: CarriedState) -> NoReturn:
            workflow.continue_as_new(inp.model_copy(update={"carried": carried}))

        loop = self._loop = AssessmentLoop(inp.assessment_id, continue_as_new)
        loop.resume(inp.carried)
        loop.stage("building_task")
        # A local activity: one short Redis read with no side effect, run inside this
        # workflow task (a marker in history instead of a round trip through the server).
        task = await workflow.execute_local_activity_method(
            TaskActivities.build_task,
            inp,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=INFRA_RETRY,
        )
        output: LLMCallOutput | None = None
        if task.budget_stop:
            reason = budget_stop_reason(task)
            workflow.logger.warning("assessment %s failed: %s", inp.assessment_id, reason)
        else:
            output, reason = await loop.outcome(inp, task)
        assessment = loop.assessment(inp, task, output, reason)
        loop.stage("aggregating")
        await workflow.execute_activity_method(
            AggregateActivities.aggregate,
            assessment,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=INFRA_RETRY,
        )
        self._result = assessment
        loop.stage(assessment.status)
        return assessment
