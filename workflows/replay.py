"""ReplayAssessmentWorkflow: one recorded event under one candidate configuration, for
`riskflow replay`. The live workflow's LLM loop (leases from the key pool, repairs, backoff,
failure reasons) is inherited as it is; the task comes from `build_replay_task` (the
candidate's prompt, rubric, language and model) and nothing is aggregated: no `latest`, no
alert, no results topic, no notification. The outcome is the workflow's result.

Pure workflow code, as `workflows.assessment`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.task import TaskActivities
    from riskflow.config.prices import TokenUsage
    from riskflow.contracts.assessment import AssessmentStatus
    from riskflow.contracts.lease import LLMCallOutput
    from riskflow.contracts.replay import ReplayOutcome, ReplayTaskInput
    from workflows.assessment import INFRA_RETRY, RiskAssessmentWorkflow, _Failed


@workflow.defn(name="ReplayAssessmentWorkflow")
class ReplayAssessmentWorkflow(RiskAssessmentWorkflow):
    @workflow.run
    async def run(self, inp: ReplayTaskInput) -> ReplayOutcome:  # type: ignore[override]
        live = inp.assessment
        self._status = AssessmentStatus(assessment_id=live.assessment_id)
        self._stage("building_task")
        task = await workflow.execute_local_activity_method(
            TaskActivities.build_replay_task,
            inp,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=INFRA_RETRY,
        )
        try:
            output: LLMCallOutput | None = await self._assess(live, task)
            reason = ""
        except _Failed as failed:
            output, reason = None, str(failed)
        assessment = self._assessment(live, task, output, reason)
        self._result = assessment
        self._stage(assessment.status)
        return ReplayOutcome(
            candidate=inp.candidate.name,
            assessment=assessment,
            usage=output.usage if output else TokenUsage(),
            latency_ms=output.latency_ms if output else 0.0,
        )
