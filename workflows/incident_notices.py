"""The incident's ladder and messages (`IncidentNotices`): quiet hours, escalation steps, a
missed ladder caught up, upgrades told to the levels reached, closes told, and every message
either beside the loop (`workflows.incident_sends`, after `ALARM_FIRST`) or, for runs started
before it, one after the other in the loop. Pure workflow code."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from riskflow.config.incidents import quiet_until
    from riskflow.contracts.incidents import (
        EventKind,
        IncidentStart,
        IncidentState,
    )
    from riskflow.contracts.notifications import (
        NotificationKind,
        NotificationRequest,
    )
    from workflows import incident_plan as plan
    from workflows.incident_base import IncidentBase, S
    from workflows.policies import NOTIFY_RETRY


class IncidentNotices(IncidentBase):
    def _quiet_end(self, inp: IncidentStart) -> datetime | None:
        return quiet_until(workflow.now(), inp.config.quiet_hours, inp.timezone)

    def _quiet_holds(self, inp: IncidentStart) -> datetime | None:
        """Until when quiet hours hold this incident's messages (None: they go now)."""
        quiet_end = self._quiet_end(inp)
        if quiet_end is None or self._v.severity.rank >= inp.config.quiet_hours_hold_below.rank:
            return None
        if self._alarm_first and self._v.rule_severity >= inp.config.life_safety_severity:
            return None  # life-safety breaks through, whatever the assessment said
        return quiet_end

    async def _escalate(self, inp: IncidentStart, step: plan.Step) -> None:
        quiet_end = self._quiet_holds(inp)
        if quiet_end is not None:
            self._set(held=[*self._v.held, step.name])
            if self._v.notified_at is None:
                self._set(notified_at=workflow.now())  # the ladder runs on, held
            self._record("held", "system", f"{step.name} held until {quiet_end.isoformat()}")
            return
        await self._notify_level(inp, step.kind, step.level, step.name)

    async def _catch_up(self, inp: IncidentStart, due: list[plan.Step]) -> None:
        """Every step due now: one message, at the highest level due (after an outage the
        ladder says once what was missed, not each step in a burst); the others are recorded
        as sent."""
        if not due or self._v.state not in (S.OPEN, S.NOTIFIED):
            return
        *missed, last = due
        if missed:
            names = [step.name for step in missed]
            self._set(steps_sent=[*self._v.steps_sent, *names])
            self._record("escalated", "system", f"caught up: {', '.join(names)} not sent")
        await self._escalate(inp, last)

    async def _release_held(self, inp: IncidentStart) -> None:
        """Quiet hours ended: one summary of what was held, to the highest level held."""
        held = self._v.held
        self._set(held=[], steps_sent=[*self._v.steps_sent, *held])
        if self._v.state not in (S.OPEN, S.NOTIFIED):
            return
        level = plan.highest_level(held)
        await self._notify_level(inp, "summary", level, f"summary-{held[-1]}")

    # -- notifications --------------------------------------------------------------------
    def _reached(self) -> list[int]:
        """The levels told so far (level 0 at least, once anything was sent)."""
        return list(range(max(self._v.escalation_level, 0) + 1))

    def _tell_upgrade(self, inp: IncidentStart, reason: str, name: str) -> None:
        """A more severe situation, told at once to every level reached (held in quiet hours
        unless life-safety or severe enough to break through)."""
        if not self._v.steps_sent and not self._v.held:
            return  # nobody was told yet: level 0 will say the new severity
        self._record("escalated", "system", f"upgraded to {self._v.severity.value}: {reason}")
        if self._quiet_holds(inp) is not None:
            return
        self._tell("upgraded", self._reached(), name)

    def _tell(self, kind: NotificationKind, levels: list[int], name: str) -> None:
        for level in levels:
            for channel in self._i.config.escalation[level].channels:
                self._sends.start(self._request(kind, level, name, channel))

    def _request(
        self, kind: NotificationKind, level: int, name: str, channel: str
    ) -> NotificationRequest:
        request = plan.notification(self._i, self._v, kind, level, name, channel)
        if self._alarm_first and self._v.assessments == 0 and not self._v.summary:
            request.assessment_pending = True
            request.detected = f"{self._v.rule}: {self._v.max_count} detection(s)"
        return request

    async def _notify_level(
        self, inp: IncidentStart, kind: NotificationKind, level: int, name: str
    ) -> None:
        channels = inp.config.escalation[level].channels
        for channel in channels:
            if self._alarm_first:
                self._sends.start(self._request(kind, level, name, channel))
            else:
                await self._notify_inline(self._request(kind, level, name, channel))
        view = self._v
        self._set(
            steps_sent=view.steps_sent if name in view.steps_sent else [*view.steps_sent, name],
            escalation_level=max(view.escalation_level, level),
            notified_at=view.notified_at or workflow.now(),
            state=S.NOTIFIED if view.state == S.OPEN else view.state,
        )
        event: EventKind = "notified" if name in ("L0", "summary-L0") else "escalated"
        self._record(event, "system", f"{name} ({kind}) -> {', '.join(channels)}", level)

    async def _notify_inline(self, request: NotificationRequest) -> None:
        """Runs started before `ALARM_FIRST`: one message after the other, in the loop."""
        try:
            await workflow.execute_local_activity_method(
                NotifyActivities.notify,
                request,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
            )
        except ActivityError as exc:
            detail = f"{request.channel} failed: {exc}"[:500]
            self._record("notified", "system", detail, request.escalation_level)

    async def _close(self, state: IncidentState, kind: EventKind, actor: str, text: str) -> None:
        view = self._v
        if view.state.closed:
            return
        was_notified = bool(view.steps_sent)
        self._set(closed_at=workflow.now(), closed_by=actor)
        self._transition(state, kind, actor, text)
        if was_notified and state != S.EXPIRED:
            closing: NotificationKind = "resolved" if state == S.RESOLVED else "dismissed"
            levels = self._reached() if self._alarm_first else [0]
            for level in levels:
                for channel in self._i.config.escalation[level].channels:
                    request = self._request(closing, level, closing, channel)
                    if self._alarm_first:
                        self._sends.start(request)
                    else:
                        await self._notify_inline(request)
