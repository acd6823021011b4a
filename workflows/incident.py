"""IncidentWorkflow: one durable incident per camera and situation family.

open -> notified -> acknowledged -> resolved, plus dismissed (first assessment says no risk,
or an operator: false alarm) and expired. Frames arrive as `frame` signals (deduplicated by
camera + frame id, coalesced, summarised, bounded); operators act through updates; the
escalation ladder, quiet hours, auto-resolve and expiry run on durable timers. Pure: no I/O,
no clock but `workflow.now()`.

The alarm never waits (patch `ALARM_FIRST`): level 0 is told within
`notify_within_seconds` of the first significant frame whether or not the LLM has answered;
assessments run beside the loop and follow as updates; every message is its own activity
beside the loop (`workflows.incident_sends`); a more severe situation is told at once to the
levels reached. Runs started before that patch keep their old commands to the end of the run
(the assessment first, messages one after the other) and take the new ones at their next
continue-as-new.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.incidents import IncidentActivities
    from activities.notify import NotifyActivities
    from riskflow.config.incidents import quiet_until
    from riskflow.contracts.assessment import Assessment, AssessmentInput
    from riskflow.contracts.incidents import (
        AUTO_RESOLVER,
        INVALID_ACTION,
        INVALID_TRANSITION,
        LLM_ACTOR,
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
    from riskflow.contracts.notifications import (
        NotificationKind,
        NotificationRequest,
        NotificationResult,
    )
    from workflows import incident_plan as plan
    from workflows.assessment import RiskAssessmentWorkflow
    from workflows.first_attempt import first_attempt
    from workflows.incident_sends import Sends
    from workflows.policies import INFRA_RETRY, NOTIFY_RETRY

ALARM_FIRST = "alarm-first"  # workflow.patched id: the behaviour described above
MAX_SEEN = 512  # camera:frame keys remembered for deduplication
MAX_PENDING = 16  # frames continue-as-new carries, at most (coalesced beyond)
S = IncidentState
Purpose = str  # "first", "reassess", "resolution"


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
        self._alarm_first = False
        self._sends = Sends(self._sent)
        self._assessing: asyncio.Task[None] | None = None
        self._queued: tuple[IncidentFrame, str, Purpose] | None = None

    # -- signals, queries, updates --------------------------------------------------------
    @workflow.signal(name="frame")
    def frame(self, frame: IncidentFrame) -> None:
        self._pending.append(frame)

    @workflow.query(name="incident")
    def incident(self) -> IncidentView | None:
        return self._view

    @workflow.update(name="ack")
    async def ack(self, action: OperatorAction) -> IncidentState:
        self._require(action, "acknowledge", (S.OPEN, S.NOTIFIED))
        self._set(acknowledged_at=workflow.now(), acknowledged_by=action.by)
        self._transition(S.ACKNOWLEDGED, "acknowledged", action.by, action.text)
        await self._flush()
        return self._state()

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
        self._require(action, "comment on", tuple(IncidentState))
        if not action.text.strip():
            raise ApplicationError("a comment needs text", type=INVALID_ACTION)
        self._record("commented", action.by, action.text)
        await self._flush()
        return self._state()

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

    def _require(
        self, action: OperatorAction, verb: str, allowed: tuple[IncidentState, ...]
    ) -> None:
        view = self._view
        if view is None:
            raise ApplicationError("the incident is not open yet", type=INVALID_TRANSITION)
        if view.state not in allowed:
            raise ApplicationError(
                f"cannot {verb} incident {view.incident_id}: it is {view.state.value}",
                view.state.value,
                type=INVALID_TRANSITION,
            )

    # -- the view (only the workflow changes it; `plan` returns new ones) ------------------
    @property
    def _v(self) -> IncidentView:
        assert self._view is not None
        return self._view

    @property
    def _i(self) -> IncidentStart:
        assert self._inp is not None
        return self._inp

    def _set(self, **update: object) -> None:
        self._view = self._v.model_copy(update=update)

    def _state(self) -> IncidentState:
        return self._v.state

    # -- the run --------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: IncidentStart) -> IncidentView | None:
        self._inp = inp
        self._alarm_first = workflow.patched(ALARM_FIRST)
        self._seen = list(inp.seen)
        self._pending = [*inp.pending, *self._pending]
        self._clear, self._newest = inp.clear, inp.newest
        if inp.carried is not None:
            self._view = inp.carried.model_copy(update={"run_id": workflow.info().run_id})
            for request in inp.sends:
                self._sends.start(request)
        elif not await self._open(inp):
            return None
        while not self._v.state.closed:
            if self._should_continue_as_new(inp) and self._assessing is None:
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._alarm_first:  # the frames so far go into the view, not the payload
                    await self._take_frames(inp)
                await self._flush()
                if not self._v.state.closed and self._assessing is None:
                    workflow.continue_as_new(self._carry(inp))
            await self._take_frames(inp)
            await self._due(inp)
            await self._flush()
            if self._v.state.closed:
                break
            self._changed = False
            wait = self._next_wake(inp) - workflow.now()
            await _wait(  # operator updates grow history too: their growth wakes it as well
                lambda: bool(self._pending) or self._changed or self._should_continue_as_new(inp),
                max(wait, timedelta(seconds=1)),
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._flush()
        if not self._sends.idle():  # the closing messages are delivered (or failed)
            await workflow.wait_condition(self._sends.idle)
            await self._flush()
        return self._view

    async def _open(self, inp: IncidentStart) -> bool:
        """The first frame (the start signal) opens the incident, unless it belongs to an
        incident that closed after it was captured (a redelivered old frame) and is no more
        severe than what that incident saw."""
        await _wait(lambda: bool(self._pending), timedelta(minutes=5))
        if not self._pending:
            return False
        first = self._pending[0]
        if not first.rule:  # a clear frame never opens an incident
            self._pending.pop(0)
            return False
        gate = IncidentGate(workflow_id=inp.workflow_id, captured_at=first.event.captured_at)
        if self._alarm_first:
            gate.severity = first.severity
        admitted = await workflow.execute_local_activity_method(
            IncidentActivities.gate,
            gate,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=INFRA_RETRY,
        )
        if not admitted.admitted:
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
        self._accept(inp, first)
        self._record("opened", "system", f"{first.rule}: {first.count} detection(s)")
        if not self._alarm_first:
            await self._assessed(inp, first, first.rule, "first")
            return True
        self._start_assessment(inp, first, first.rule, "first")
        await _wait(lambda: self._assessing is None, _seconds(inp.config.notify_within_seconds))
        return True

    # -- frames ---------------------------------------------------------------------------
    def _accept(self, inp: IncidentStart, frame: IncidentFrame) -> bool:
        """Keep a new matching frame; False for a duplicate or a clear frame."""
        key = plan.frame_key(frame)
        if key in self._seen:
            return False
        self._seen = [*self._seen, key][-MAX_SEEN:]
        if not frame.rule:
            self._clear = frame
            return False
        self._view = plan.with_frame(self._v, frame, inp.config, workflow.now())
        self._newest = frame
        return True

    async def _take_frames(self, inp: IncidentStart) -> None:
        frames, self._pending = self._pending, []
        for frame in frames:
            if self._v.state.closed:
                return
            reason = plan.escalation_reason(self._v, frame, inp.config)
            if not (self._accept(inp, frame) and reason):
                continue
            self._record("escalated", "system", reason)
            if not self._alarm_first:
                before = self._v.severity
                await self._assessed(inp, frame, frame.rule, "reassess")
                if self._v.severity.rank > before.rank and self._v.state == S.ACKNOWLEDGED:
                    await self._notify_level(inp, "escalated", 0, f"up{self._v.assessments}")
                continue
            floor = plan.severity_of_rule(self._v.rule_severity)  # a worse rule: at once
            if floor.rank > self._v.severity.rank:
                self._set(severity=floor)
                self._tell_upgrade(inp, reason, f"up-{frame.rule}")
            self._start_assessment(inp, frame, frame.rule, "reassess")

    # -- assessments ----------------------------------------------------------------------
    def _start_assessment(
        self, inp: IncidentStart, frame: IncidentFrame, situation: str, purpose: Purpose
    ) -> None:
        """An assessment beside the loop; while one runs, the latest request waits its turn
        (a more severe frame before a less severe one)."""
        if frame.rule:  # the interval counts from here; this frame is no longer new
            self._set(assessed_at=workflow.now())
            self._newest = None
        if self._assessing is not None:
            queued = self._queued
            if queued is None or frame.severity >= queued[0].severity:
                self._queued = (frame, situation, purpose)
            return
        self._assessing = asyncio.create_task(self._assessed(inp, frame, situation, purpose))

    async def _assessed(
        self, inp: IncidentStart, frame: IncidentFrame, situation: str, purpose: Purpose
    ) -> None:
        try:
            result = await self._assess(inp, frame, situation)
            if not self._v.state.closed:
                await self._after(inp, result, purpose)
        finally:
            if self._alarm_first:
                self._assessing, queued, self._queued = None, self._queued, None
                if queued is not None and not self._v.state.closed:
                    self._start_assessment(inp, *queued)
                self._changed = True

    async def _after(self, inp: IncidentStart, result: Assessment | None, purpose: Purpose) -> None:
        cfg = inp.config
        level = result.risk_level if result is not None else None
        if purpose == "first":
            if (
                result is not None
                and level is not None
                and level.rank <= cfg.dismiss_at_or_below.rank
            ):
                await self._close(S.DISMISSED, "dismissed", LLM_ACTOR, result.summary)
            elif result is not None and self._alarm_first and self._v.steps_sent:
                self._tell("assessed", self._reached(), f"a{self._v.assessments}")
        elif purpose == "resolution" and (
            result is not None
            and level is not None
            and level.rank <= cfg.resolve_max_level.rank
            and (result.risk_score or 0) <= cfg.resolve_max_score
        ):
            await self._close(S.RESOLVED, "resolved", AUTO_RESOLVER, result.summary[:300])

    async def _assess(
        self, inp: IncidentStart, frame: IncidentFrame, situation: str
    ) -> Assessment | None:
        """The existing assessment (build task -> lease -> LLM -> validate -> aggregate): its
        first attempt inline (`workflows.first_attempt`), and when that does not answer, the
        full loop as a child workflow; its outcome goes into the incident's timeline."""
        assessment_id = f"{self._v.incident_id}-a{self._v.assessments + 1}"
        request = AssessmentInput(
            assessment_id=assessment_id,
            situation=situation,
            severity=frame.severity,
            event=frame.event,
            policy=inp.policy,
        )
        if frame.rule and not self._alarm_first:
            self._set(assessed_at=workflow.now())
            self._newest = None
        result, carried = await first_attempt(request)
        if result is None:
            result = await workflow.execute_child_workflow(
                RiskAssessmentWorkflow.run,
                request.model_copy(update={"carried": carried}),
                id=assessment_id,
            )
        self._set(assessments=self._v.assessments + 1)
        if result.status != "assessed" or result.risk_level is None:
            self._record("assessed", LLM_ACTOR, f"failed: {result.failure_reason}"[:500])
            return None
        view, before = self._v, self._v.severity
        if frame.rule and not (self._alarm_first and view.state.closed):  # not a resolution check
            severity = view.severity
            if result.risk_level.rank > severity.rank or view.assessments == 1:
                severity = result.risk_level
            if self._alarm_first and view.assessments > 1:  # never below the rule's floor
                floor = plan.severity_of_rule(view.rule_severity)
                severity = max(severity, floor, key=lambda level: level.rank)
            self._set(
                severity=severity,
                summary=result.summary,
                hazards=result.hazards,
                recommended_actions=result.recommended_actions,
            )
        detail = f"{result.risk_level.value} ({result.risk_score}): {result.summary}"
        self._record("assessed", LLM_ACTOR, detail[:500])
        if self._alarm_first and self._v.severity.rank > before.rank and view.assessments > 1:
            name = f"up{self._v.assessments}"
            self._tell_upgrade(inp, f"assessed {self._v.severity.value}", name)
        return result

    # -- timers ---------------------------------------------------------------------------
    def _next_wake(self, inp: IncidentStart) -> datetime:
        cfg, view = inp.config, self._v
        times = [view.opened_at + timedelta(seconds=cfg.expire_after_seconds)]
        times.append(_quiet_since(view) + timedelta(seconds=cfg.auto_resolve_after_seconds))
        step = plan.next_step(view, cfg)
        if step is not None and step.due is not None and view.state in (S.OPEN, S.NOTIFIED):
            times.append(step.due)
        reassess = plan.reassess_due(view, cfg, self._newest is not None)
        if reassess is not None:
            times.append(reassess)
        quiet_end = self._quiet_end(inp)
        if view.held and quiet_end is not None:
            times.append(quiet_end)
        return min(times)

    async def _due(self, inp: IncidentStart) -> None:
        cfg, now = inp.config, workflow.now()
        if now >= self._v.opened_at + timedelta(seconds=cfg.expire_after_seconds):
            await self._close(S.EXPIRED, "expired", "system", "open for too long")
            return
        if self._v.held and self._quiet_end(inp) is None:
            await self._release_held(inp)
        if self._alarm_first:
            await self._catch_up(inp, plan.due_steps(self._v, cfg, now))
        while not self._alarm_first and self._v.state in (S.OPEN, S.NOTIFIED):
            step = plan.next_step(self._v, cfg)
            if step is None or step.due is None or step.due > workflow.now():
                break
            await self._escalate(inp, step)
        reassess = plan.reassess_due(self._v, cfg, self._newest is not None)
        if self._newest is not None and reassess is not None and reassess <= workflow.now():
            await self._run_assessment(inp, self._newest, self._newest.rule, "reassess")
        if now >= _quiet_since(self._v) + timedelta(seconds=cfg.auto_resolve_after_seconds):
            self._set(checked_at=now)  # a check that finds the hazard waits another period
            await self._resolution_check(inp)

    async def _run_assessment(
        self, inp: IncidentStart, frame: IncidentFrame, situation: str, purpose: Purpose
    ) -> None:
        if self._alarm_first:
            self._start_assessment(inp, frame, situation, purpose)
            return
        before = self._v.severity
        await self._assessed(inp, frame, situation, purpose)
        upgraded = self._v.severity.rank > before.rank
        if purpose == "reassess" and upgraded and self._v.state == S.ACKNOWLEDGED:
            await self._notify_level(inp, "escalated", 0, f"up{self._v.assessments}")

    async def _resolution_check(self, inp: IncidentStart) -> None:
        """No matching frame for the quiet period: ask the LLM about the newest clear frame
        ("is the hazard still present?"); resolve only on a confident no."""
        clear, self._clear = self._clear, None
        if clear is None:
            self._record("assessed", "system", "no clear frame to check; stays open")
            return
        view = self._v
        situation = f"resolution check: is the {view.rule or view.family} hazard still present?"
        await self._run_assessment(inp, clear, situation, "resolution")

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

    def _sent(
        self, request: NotificationRequest, result: NotificationResult | None, error: str
    ) -> None:
        """A send beside the loop ended: a failure is recorded, and the level's fallback
        channels get the same message."""
        self._changed = True
        if result is not None or self._view is None:
            return
        level = request.escalation_level
        self._record("notified", "system", f"{request.channel} failed: {error}"[:500], level)
        if ":fallback:" in request.idempotency_key:
            return
        for channel in self._i.config.escalation[level].fallback_channels:
            key = f"{request.idempotency_key}:fallback:{channel}"
            update = {"channel": channel, "idempotency_key": key}
            self._sends.start(request.model_copy(update=update))

    # -- state and records ----------------------------------------------------------------
    def _transition(self, state: IncidentState, kind: EventKind, actor: str, text: str) -> None:
        self._set(state=state)
        self._changed = True
        self._record(kind, actor, text)

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

    def _record(self, kind: EventKind, actor: str, detail: str, level: int = -1) -> None:
        """A timeline entry and its event, sent with the view at the next `_flush`."""
        now = workflow.now()
        self._set(version=self._v.version + 1, updated_at=now)
        entry = TimelineEntry(at=now, kind=kind, actor=actor, detail=detail)
        self._view = plan.with_entry(self._v, entry, self._i.config.max_timeline)
        self._unflushed.append(plan.event_of(self._v, kind, actor, detail, level))

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
            IncidentRecord(view=view, events=events, cooldown_seconds=cooldown),
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

    def _carry(self, inp: IncidentStart) -> IncidentStart:
        """The next run's input: the view, and bounded summaries of what is under way (never
        raw backlogs: the payload stays far below Temporal's 2 MB)."""
        pending = self._pending
        if self._alarm_first:
            pending = plan.coalesced(pending, MAX_PENDING)
        update = {"carried": self._v, "seen": self._seen, "pending": pending}
        update |= {"clear": self._clear, "newest": self._newest}
        if self._alarm_first:
            update["sends"] = self._sends.in_flight
        return inp.model_copy(update=update)


async def _wait(condition: Callable[[], bool], within: timedelta) -> None:
    """Until `condition` holds or `within` (a durable timer) passes."""
    with contextlib.suppress(asyncio.TimeoutError):
        await workflow.wait_condition(condition, timeout=within)


def _seconds(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _quiet_since(view: IncidentView) -> datetime:
    """Since when the camera has shown nothing matching (or the last resolution check)."""
    return max(t for t in (view.opened_at, view.last_match_at, view.checked_at) if t is not None)
