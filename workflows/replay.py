"""ReplayAssessmentWorkflow: one recorded event under one candidate configuration, for
`riskflow replay`. The live assessment loop (`workflows.loop`: leases from the key pool,
repairs, backoff, failure reasons) runs as it is; the task comes from `build_replay_task` (the
candidate's prompt, rubric, language and model) and nothing is aggregated: no `latest`, no
alert, no results topic, no notification. The outcome is the workflow's result.

Pure workflow code, as `workflows.assessment`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import NoReturn

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.task import TaskActivities
    from riskflow.config.prices import TokenUsage
    from riskflow.contracts.assessment import CarriedState
    from riskflow.contracts.replay import ReplayOutcome, ReplayTaskInput
    from workflows.loop import AssessmentLoop, LoopQueries
    from workflows.policies import INFRA_RETRY


@workflow.defn(name="ReplayAssessmentWorkflow")
class ReplayAssessmentWorkflow(LoopQueries):
    @workflow.run
    async def run(self, inp: ReplayTaskInput) -> ReplayOutcome:
        live = inp.assessment

        def continue_as_new(carried: CarriedState) -> NoReturn:
            # The replay's own input, carrying what the loop spent (not the live input).
            update = {"assessment": live.model_copy(update={"carried": carried})}
            workflow.continue_as_new(inp.model_copy(update=update))

        loop = self._loop = AssessmentLoop(live.assessment_id, continue_as_new)
        loop.resume(live.carried)
        loop.stage("building_task")
        task = await workflow.execute_local_activity_method(
            TaskActivities.build_replay_task,
            inp,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=INFRA_RETRY,
        )
        output, reason = await loop.outcome(live, task)
        assessment = loop.assessment(live, task, output, reason)
        self._result = assessment
        loop.stage(assessment.status)
        return ReplayOutcome(
            candidate=inp.candidate.name,
            assessment=assessment,
            usage=output.usage if output else TokenUsage(),
            latency_ms=output.latency_ms if output else 0.0,
        )
