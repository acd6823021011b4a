"""IncidentWorkflow with its notify step changed, each registered under the workflow's own
name as a deploy of the changed code would be: tests/test_replay_histories.py shows that a
change of commands without `workflow.patched` fails the replay of a recorded incident, and that
the same change behind `workflow.patched` does not. Workflow code: a module of its own, so the
sandbox can import it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from riskflow.contracts.incidents import IncidentFrame, IncidentStart, IncidentView
    from riskflow.contracts.notifications import NotificationRequest
    from workflows.incident import IncidentWorkflow

NOTIFY_PATCH = "notify-as-activity"


async def _notify_as_activity(request: NotificationRequest) -> None:
    """The notification as a normal activity instead of a local one."""
    await workflow.execute_activity(
        "notify",
        request,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=RetryPolicy(maximum_attempts=70),
    )


@workflow.defn(name="IncidentWorkflow")
class NotifyAsActivity(IncidentWorkflow):
    """The notify local activity made a normal activity, unguarded."""

    @workflow.run
    async def run(self, inp: IncidentStart) -> IncidentView | None:
        return await super().run(inp)

    async def _notify_inline(self, request: NotificationRequest) -> None:
        await _notify_as_activity(request)


@workflow.defn(name="IncidentWorkflow")
class AuditBeforeNotify(IncidentWorkflow):
    """One activity added before each notification, unguarded."""

    @workflow.run
    async def run(self, inp: IncidentStart) -> IncidentView | None:
        return await super().run(inp)

    async def _notify_inline(self, request: NotificationRequest) -> None:
        await workflow.execute_activity(
            "audit_notification",
            request.idempotency_key,
            start_to_close_timeout=timedelta(seconds=10),
        )
        await super()._notify_inline(request)


@workflow.defn(name="IncidentWorkflow")
class PatchedNotifyAsActivity(IncidentWorkflow):
    """NotifyAsActivity's change behind `workflow.patched`: a history recorded before it
    takes the old path, a new run the new one."""

    @workflow.run
    async def run(self, inp: IncidentStart) -> IncidentView | None:
        return await super().run(inp)

    async def _notify_inline(self, request: NotificationRequest) -> None:
        if workflow.patched(NOTIFY_PATCH):
            await _notify_as_activity(request)
        else:
            await super()._notify_inline(request)


@workflow.defn(name="IncidentWorkflow")
class ReorderedChannels(IncidentWorkflow):
    """A level's messages started in the other order, unguarded (after alarm-first they go
    beside the loop, started in one workflow task, each a `notify` activity)."""

    @workflow.run
    async def run(self, inp: IncidentStart) -> IncidentView | None:
        for step in inp.config.escalation:
            step.channels.reverse()
        return await super().run(inp)


@workflow.defn(name="IncidentWorkflow")
class UnguardedTellAtOnce(IncidentWorkflow):
    """A fall's level 0 sent before the model is asked (the `tell-at-once` change) without
    its `workflow.patched`: a fall recorded by a release that waited for the first
    assessment replays other commands."""

    @workflow.run
    async def run(self, inp: IncidentStart) -> IncidentView | None:
        return await super().run(inp)

    def _tells_at_once(self, inp: IncidentStart, first: IncidentFrame) -> bool:
        return self._alarm_first and first.severity >= inp.config.life_safety_severity
