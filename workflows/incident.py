"""IncidentWorkflow: one durable incident per camera and situation family.

open -> notified -> acknowledged -> resolved, plus dismissed (first assessment says no risk,
or an operator: false alarm) and expired. Frames arrive as `frame` signals (deduplicated by
camera + frame id, summarised, bounded); operators act through updates; the escalation
ladder, quiet hours, auto-resolve and expiry run on durable timers. Pure: no I/O, no clock
but `workflow.now()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.incidents import IncidentActivities
    from activities.notify import NotifyActivities
    from riskflow import incident_plan as plan
    from riskflow.incident_config import quiet_until, quiet_until_v1
    from riskflow.incidents import (
        AUTO_RESOLVER,
        INVALID_ACTION,
        INVALID_TRANSITION,
        LLM_ACTOR,
        OTHER_INCIDENT,
        EventKind,
        IncidentEvent,
        IncidentFrame,
        IncidentGate,
        IncidentRecord,
        IncidentStart,
        IncidentState,
        IncidentView,
        OperatorAction,
        TimelineEntry,
    )
    from riskflow.models import Assessment, AssessmentInput
    from riskflow.notifications import NotificationKind
    from workflows.assessment import INFRA_RETRY, RiskAssessmentWorkflow
    from workflows.first_attempt import first_attempt

# A channel that keeps failing is retried for about an hour, then recorded as failed: the
# incident goes on (the next level may reach somebody).
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=70,
)
MAX_SEEN = 512  # camera:frame keys remembered for deduplication
# Quiet hours computed on instants, safe across daylight-saving changes (runs that started
# before it keep `quiet_until_v1`: holding or sending a step is a command).
QUIET_HOURS_DST_PATCH = "quiet-hours-dst"
S = IncidentState


@workflow.defn
class IncidentWorkflow:
    def __init__(self) -> None:
        self._inp: IncidentStart | None = None
        self._view: IncidentView | None = None
        self._pending: list[IncidentFrame] = []
        self._seen: list[str] = []
        self._changed = False
        self._clear: IncidentFrame | None = None
        self._newest: IncidentFrame | None = None  # matching, not assessed yet
        self._unflushed: list[IncidentEvent] = []

    # -- signals, queries, updates --------------------------------------------------------
    @workflow.signal(name="frame")
    def frame(self, frame: IncidentFrame) -> None:
        self._pending.append(frame)

    @workflow.query(name="incident")
    def incident(self) -> IncidentView | None:
        return self._view

    @workflow.update(name="ack")
    async def ack(self, action: OperatorAction) -> IncidentState:
        view = self._require(action, "acknowledge", (S.OPEN, S.NOTIFIED))
        view.acknowledged_at, view.acknowledged_by = workflow.now(), action.by
        self._transition(S.ACKNOWLEDGED, "acknowledged", action.by, action.text)
        await self._flush()
        return view.state

    @workflow.update(name="resolve")
    async def resolve(self, action: OperatorAction) -> IncidentState:
        self._require(action, "resolve", (S.OPEN, S.NOTIFIED, S.ACKNOWLEDGED))
        await self._close(S.RESOLVED, "resolved", action.by, action.text or "resolved")
        await self._flush()
        return self._state()

    @workflow.update(name="dismiss")
    async def dismiss(self, action: OperatorAction) -> IncidentState:
        self._require(action, "dismiss", (S.OPEN, S.NOTIFIED, S.ACKNOWLEDGED))
        await self._close(S.DISMISSED, "dismissed", action.by, action.text or "false alarm")
        await self._flush()
        return self._state()

    @workflow.update(name="comment")
    async def comment(self, action: OperatorAction) -> IncidentState:
        view = self._require(action, "comment on", tuple(IncidentState))
        if not action.text.strip():
            raise ApplicationError("a comment needs text", type=INVALID_ACTION)
        self._record("commented", action.by, action.text)
        await self._flush()
        return view.state

    # Validators refuse an action the state does not allow before it enters history.
    @ack.validator
    def _valid_ack(self, action: OperatorAction) -> None:
        self._require(action, "acknowledge", (S.OPEN, S.NOTIFIED))

    @resolve.validator
    def _valid_resolve(self, action: OperatorAction) -> None:
        self._require(action, "resolve", (S.OPEN, S.NOTIFIED, S.ACKNOWLEDGED))

    @dismiss.validator
    def _valid_dismiss(self, action: OperatorAction) -> None:
        self._require(action, "dismiss", (S.OPEN, S.NOTIFIED, S.ACKNOWLEDGED))

    @comment.validator
    def _valid_comment(self, action: OperatorAction) -> None:
        self._require(action, "comment on", tuple(IncidentState))
        if not action.text.strip():
            raise ApplicationError("a comment needs text", type=INVALID_ACTION)

    def _state(self) -> IncidentState:
        assert self._view is not None
        return self._view.state

    def _require(
        self, action: OperatorAction, verb: str, allowed: tuple[IncidentState, ...]
    ) -> IncidentView:
        view = self._view
        meant = action.incident_id
        if meant and (view is None or view.incident_id != meant):
            current = f"its current incident is {view.incident_id}" if view else "none is open"
            raise ApplicationError(
                f"cannot {verb} incident {meant}: it is not the camera's current incident "
                f"({current})",
                type=OTHER_INCIDENT,
            )
        if view is None:
            raise ApplicationError("the incident is not open yet", type=INVALID_TRANSITION)
        if view.state not in allowed:
            raise ApplicationError(
                f"cannot {verb} incident {view.incident_id}: it is {view.state.value}",
                view.state.value,
                type=INVALID_TRANSITION,
            )
        return view

    # -- the run --------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: IncidentStart) -> IncidentView | None:
        self._inp = inp
        self._seen = list(inp.seen)
        self._pending = [*inp.pending, *self._pending]
        self._clear, self._newest = inp.clear, inp.newest
        if inp.carried is not None:
            self._view = inp.carried
            self._view.run_id = workflow.info().run_id
        elif not await self._open(inp):
            return None
        view = self._view
        assert view is not None
        while not view.state.closed:
            if self._should_continue_as_new(inp):
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._flush()
                if not view.state.closed:
                    workflow.continue_as_new(self._carry(inp, view))
            await self._take_frames(inp, view)
            await self._due(inp, view)
            await self._flush()
            if view.state.closed:
                break
            self._changed = False
            wait = self._next_wake(inp, view) - workflow.now()
            await _wait(  # operator updates grow history too: their growth wakes it as well
                lambda: bool(self._pending) or self._changed or self._should_continue_as_new(inp),
                max(wait, timedelta(seconds=1)),
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._flush()
        return view

    async def _open(self, inp: IncidentStart) -> bool:
        """The first frame (the start signal) opens the incident, unless it belongs to an
        incident that closed after it was captured (a redelivered old frame)."""
        await _wait(lambda: bool(self._pending), timedelta(minutes=5))
        if not self._pending:
            return False
        first = self._pending[0]
        if not first.rule:  # a clear frame never opens an incident
            self._pending.pop(0)
            return False
        gate = await workflow.execute_local_activity_method(
            IncidentActivities.gate,
            IncidentGate(workflow_id=inp.workflow_id, captured_at=first.event.captured_at),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=INFRA_RETRY,
        )
        if not gate.admitted:
            workflow.logger.info("frame of a closed incident %s: ignored", inp.workflow_id)
            return False
        now = workflow.now()
        self._view = IncidentView(
            incident_id=f"{inp.workflow_id}-{int(first.event.captured_at.timestamp())}",
            workflow_id=inp.workflow_id,
            run_id=workflow.info().run_id,
            camera_id=inp.camera_id,
            site_id=inp.site_id,
            family=inp.family,
            rule=first.rule,
            rule_severity=first.severity,
            severity=plan.severity_of_rule(first.severity),
            opened_at=now,
            updated_at=now,
        )
        self._pending.pop(0)
        self._accept(inp, self._view, first)
        self._record("opened", "system", f"{first.rule}: {first.count} detection(s)")
        await self._first_assessment(inp, self._view, first)
        return True

    async def _first_assessment(
        self, inp: IncidentStart, view: IncidentView, first: IncidentFrame
    ) -> None:
        assessment = await self._assess(inp, view, first, first.rule)
        if assessment is None or assessment.risk_level is None:
            return  # failed: the incident stays open at its rule's severity, and is notified
        if assessment.risk_level.rank <= inp.config.dismiss_at_or_below.rank:
            await self._close(S.DISMISSED, "dismissed", LLM_ACTOR, assessment.summary)

    # -- frames ---------------------------------------------------------------------------
    def _accept(self, inp: IncidentStart, view: IncidentView, frame: IncidentFrame) -> bool:
        """Keep a new matching frame; False for a duplicate or a clear frame."""
        key = plan.frame_key(frame)
        if key in self._seen:
            return False
        self._seen = [*self._seen, key][-MAX_SEEN:]
        if not frame.rule:
            self._clear = frame
            return False
        plan.keep_frame(view, frame, inp.config, workflow.now())
        self._newest = frame
        return True

    async def _take_frames(self, inp: IncidentStart, view: IncidentView) -> None:
        frames, self._pending = self._pending, []
        for frame in frames:
            if view.state.closed:
                return
            reason = plan.escalation_reason(view, frame, inp.config)
            if self._accept(inp, view, frame) and reason:
                self._record("escalated", "system", reason)
                await self._reassess(inp, view, frame)

    async def _reassess(self, inp: IncidentStart, view: IncidentView, frame: IncidentFrame) -> None:
        """Assess a later frame: an upgrade re-notifies an acknowledged incident; a downgrade
        never lowers or dismisses it (only the first assessment may)."""
        before = view.severity
        await self._assess(inp, view, frame, frame.rule)
        if view.severity.rank > before.rank and view.state == S.ACKNOWLEDGED:
            await self._notify_level(inp, view, "escalated", 0, f"up{view.assessments}")

    # -- assessments ----------------------------------------------------------------------
    async def _assess(
        self, inp: IncidentStart, view: IncidentView, frame: IncidentFrame, situation: str
    ) -> Assessment | None:
        """The existing assessment (build task -> lease -> LLM -> validate -> aggregate): its
        first attempt inline (`workflows.first_attempt`), and when that does not answer, the
        full loop as a child workflow; its outcome goes into the incident's timeline."""
        assessment_id = f"{view.incident_id}-a{view.assessments + 1}"
        request = AssessmentInput(
            assessment_id=assessment_id,
            situation=situation,
            severity=frame.severity,
            event=frame.event,
            policy=inp.policy,
        )
        if frame.rule:  # the interval counts from here; this frame is no longer new
            view.assessed_at, self._newest = workflow.now(), None
        result, carried = await first_attempt(request)
        if result is None:
            result = await workflow.execute_child_workflow(
                RiskAssessmentWorkflow.run,
                request.model_copy(update={"carried": carried}),
                id=assessment_id,
            )
        view.assessments += 1
        if result.status != "assessed" or result.risk_level is None:
            self._record("assessed", LLM_ACTOR, f"failed: {result.failure_reason}"[:500])
            return None
        if frame.rule:  # a resolution check does not change what the incident is about
            if result.risk_level.rank > view.severity.rank or view.assessments == 1:
                view.severity = result.risk_level
            view.summary, view.hazards = result.summary, result.hazards
            view.recommended_actions = result.recommended_actions
        detail = f"{result.risk_level.value} ({result.risk_score}): {result.summary}"
        self._record("assessed", LLM_ACTOR, detail[:500])
        return result

    async def _resolution_check(self, inp: IncidentStart, view: IncidentView) -> None:
        """No matching frame for the quiet period: ask the LLM about the newest clear frame
        ("is the hazard still present?"); resolve only on a confident no."""
        clear, self._clear = self._clear, None
        if clear is None:
            self._record("assessed", "system", "no clear frame to check; stays open")
            return
        situation = f"resolution check: is the {view.rule or view.family} hazard still present?"
        result = await self._assess(inp, view, clear, situation)
        cfg = inp.config
        if (
            result is not None
            and result.risk_level is not None
            and result.risk_level.rank <= cfg.resolve_max_level.rank
            and (result.risk_score or 0) <= cfg.resolve_max_score
        ):
            await self._close(S.RESOLVED, "resolved", AUTO_RESOLVER, result.summary[:300])

    # -- timers ---------------------------------------------------------------------------
    def _next_wake(self, inp: IncidentStart, view: IncidentView) -> datetime:
        cfg = inp.config
        times = [view.opened_at + timedelta(seconds=cfg.expire_after_seconds)]
        times.append(_quiet_since(view) + timedelta(seconds=cfg.auto_resolve_after_seconds))
        step = plan.next_step(view, cfg)
        if step is not None and view.state in (S.OPEN, S.NOTIFIED):
            times.append(step[2])
        reassess = plan.reassess_due(view, cfg, self._newest is not None)
        if reassess is not None:
            times.append(reassess)
        quiet_end = self._quiet_end(inp)
        if view.held and quiet_end is not None:
            times.append(quiet_end)
        return min(times)

    async def _due(self, inp: IncidentStart, view: IncidentView) -> None:
        cfg, now = inp.config, workflow.now()
        if now >= view.opened_at + timedelta(seconds=cfg.expire_after_seconds):
            await self._close(S.EXPIRED, "expired", "system", "open for too long")
            return
        if view.held and self._quiet_end(inp) is None:
            await self._release_held(inp, view)
        while view.state in (S.OPEN, S.NOTIFIED):
            step = plan.next_step(view, cfg)
            if step is None or step[2] > workflow.now():
                break
            await self._escalate(inp, view, step[0], step[1])
        reassess = plan.reassess_due(view, cfg, self._newest is not None)
        if self._newest is not None and reassess is not None and reassess <= workflow.now():
            await self._reassess(inp, view, self._newest)
        if now >= _quiet_since(view) + timedelta(seconds=cfg.auto_resolve_after_seconds):
            view.checked_at = now  # a check that finds the hazard waits another quiet period
            await self._resolution_check(inp, view)

    def _quiet_end(self, inp: IncidentStart) -> datetime | None:
        periods = inp.config.quiet_hours
        if not periods:
            return None
        if workflow.patched(QUIET_HOURS_DST_PATCH):
            return quiet_until(workflow.now(), periods, inp.timezone)
        return quiet_until_v1(workflow.now(), periods, inp.timezone)

    async def _escalate(
        self, inp: IncidentStart, view: IncidentView, name: str, level: int
    ) -> None:
        quiet_end = self._quiet_end(inp)
        if quiet_end is not None and view.severity.rank < inp.config.quiet_hours_hold_below.rank:
            view.held = [*view.held, name]
            if view.notified_at is None:
                view.notified_at = workflow.now()  # the ladder runs on, held
            self._record("held", "system", f"{name} held until {quiet_end.isoformat()}")
            return
        kind: NotificationKind = "opened" if name == "L0" else "escalated"
        if "r" in name:
            kind = "reminder"
        await self._notify_level(inp, view, kind, level, name)

    async def _release_held(self, inp: IncidentStart, view: IncidentView) -> None:
        """Quiet hours ended: one summary of what was held, to the highest level held."""
        held, view.held = view.held, []
        view.steps_sent = [*view.steps_sent, *held]
        if view.state not in (S.OPEN, S.NOTIFIED):
            return
        level = max(int(name[1:].split("r")[0]) for name in held)
        await self._notify_level(inp, view, "summary", level, f"summary-{held[-1]}")

    async def _notify_level(
        self, inp: IncidentStart, view: IncidentView, kind: NotificationKind, level: int, name: str
    ) -> None:
        channels = inp.config.escalation[level].channels
        for channel in channels:
            await self._notify(inp, view, kind, level, name, channel)
        if name not in view.steps_sent:
            view.steps_sent = [*view.steps_sent, name]
        view.escalation_level = max(view.escalation_level, level)
        if view.notified_at is None:
            view.notified_at = workflow.now()
        if view.state == S.OPEN:
            view.state = S.NOTIFIED
        event: EventKind = "notified" if name in ("L0", "summary-L0") else "escalated"
        self._record(event, "system", f"{name} ({kind}) -> {', '.join(channels)}", level)

    async def _notify(
        self,
        inp: IncidentStart,
        view: IncidentView,
        kind: NotificationKind,
        level: int,
        name: str,
        channel: str,
    ) -> None:
        request = plan.notification(inp, view, kind, level, name, channel)
        try:
            await workflow.execute_local_activity_method(
                NotifyActivities.notify,
                request,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
            )
        except ActivityError as exc:
            self._record("notified", "system", f"{channel} failed: {exc}"[:500], level)

    # -- state and records ----------------------------------------------------------------
    def _transition(self, state: IncidentState, kind: EventKind, actor: str, text: str) -> None:
        assert self._view is not None
        self._view.state = state
        self._changed = True
        self._record(kind, actor, text)

    async def _close(self, state: IncidentState, kind: EventKind, actor: str, text: str) -> None:
        view = self._view
        assert view is not None and self._inp is not None
        if view.state.closed:
            return
        was_notified = bool(view.steps_sent)
        view.closed_at, view.closed_by = workflow.now(), actor
        self._transition(state, kind, actor, text)
        if was_notified and state != S.EXPIRED:
            closing: NotificationKind = "resolved" if state == S.RESOLVED else "dismissed"
            for channel in self._inp.config.escalation[0].channels:
                await self._notify(self._inp, view, closing, 0, closing, channel)

    def _record(self, kind: EventKind, actor: str, detail: str, level: int = -1) -> None:
        """A timeline entry and its event, sent with the view at the next `_flush`."""
        view, inp = self._view, self._inp
        assert view is not None and inp is not None
        now = workflow.now()
        view.version += 1
        view.updated_at = now
        entry = TimelineEntry(at=now, kind=kind, actor=actor, detail=detail)
        plan.add_entry(view, entry, inp.config.max_timeline)
        self._unflushed.append(plan.event_of(view, kind, actor, detail, level))

    async def _flush(self) -> None:
        """One activity writes the view (Redis) and the events recorded since the last flush
        (topic): a step costs one round trip, not one per event."""
        view, inp = self._view, self._inp
        if not self._unflushed or view is None or inp is None:
            return
        events, self._unflushed = self._unflushed, []
        cooldown = inp.config.dismissed_cooldown_seconds if view.state == S.DISMISSED else 0.0
        await workflow.execute_local_activity_method(
            IncidentActivities.record,
            IncidentRecord(
                view=view.model_copy(deep=True), events=events, cooldown_seconds=cooldown
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=INFRA_RETRY,
        )

    # -- continue-as-new ------------------------------------------------------------------
    def _should_continue_as_new(self, inp: IncidentStart) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > inp.config.max_history_events
        )

    def _carry(self, inp: IncidentStart, view: IncidentView) -> IncidentStart:
        update = {"carried": view, "seen": self._seen, "pending": self._pending}
        return inp.model_copy(update={**update, "clear": self._clear, "newest": self._newest})


async def _wait(condition: Callable[[], bool], within: timedelta) -> None:
    """Until `condition` holds or `within` (a durable timer) passes."""
    with contextlib.suppress(asyncio.TimeoutError):
        await workflow.wait_condition(condition, timeout=within)


def _quiet_since(view: IncidentView) -> datetime:
    """Since when the camera has shown nothing matching (or the last resolution check)."""
    return max(t for t in (view.opened_at, view.last_match_at, view.checked_at) if t is not None)
