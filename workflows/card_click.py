"""CardClickWorkflow: one click on an incident card, acted on durably.

The callback listener starts it when the vendor delivers a click (workflow id: the channel and
the vendor's event id, `card_click_workflow_id`; a retried delivery starts nothing) and runs
its activities on its own task queue (`CARD_CLICK_QUEUE`,
`workers.callbacks.clicks.ClickActivities`):

1. `card_click_act`: the person, their role at the incident's site, the incident's update;
   a refusal is an answer (`ClickOutcome`), Temporal or Redis away is retried for up to an
   hour, so a click made while the workers restart is acted on when they are back;
2. `card_click_tell`: the card says what happened, to everyone or to the clicker alone.

The workflow holds no clock or I/O; the activities are named, not imported (they belong to
the listener's program, above this layer).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from riskflow.contracts.card_actions import CardClick, ClickOutcome
    from workflows.policies import CARD_CLICK_GIVE_UP, CARD_CLICK_RETRY, CARD_TELL_RETRY

ACT, TELL = "card_click_act", "card_click_tell"


@workflow.defn(name="CardClickWorkflow")
class CardClickWorkflow:
    @workflow.run
    async def run(self, click: CardClick) -> ClickOutcome:
        outcome: ClickOutcome
        try:
            outcome = await workflow.execute_activity(
                ACT,
                click,
                result_type=ClickOutcome,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=CARD_CLICK_GIVE_UP,
                retry_policy=CARD_CLICK_RETRY,
            )
        except ActivityError as exc:
            workflow.logger.error("click %s not acted on: %s", click.event_id, exc.cause)
            outcome = ClickOutcome(result="failed", detail=str(exc.cause), line="")
        if outcome.line:
            try:
                await workflow.execute_activity(
                    TELL,
                    args=[click, outcome],
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=CARD_TELL_RETRY,
                )
            except ActivityError as exc:  # the incident changed either way
                workflow.logger.warning("card of click %s not updated: %s", click.event_id, exc)
        return outcome
