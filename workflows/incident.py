"""IncidentWorkflow: one durable incident per camera and situation family.

open -> notified -> acknowledged -> resolved, plus dismissed (first assessment says no risk,
or an operator: false alarm) and expired. Frames arrive as `frame` signals (deduplicated by
camera + frame id, coalesced, summarised, bounded); operators act through updates; the
escalation ladder, quiet hours, auto-resolve and expiry run on durable timers. Pure: no I/O,
no clock but `workflow.now()`.

The alarm never waits (patch `ALARM_FIRST`, asked once per run, in `__init__`): level 0 is
told within `notify_within_seconds` whether or not the LLM has answered; assessments run
beside the loop and follow as updates; messages go beside the loop
(`workflows.incident_state`). Runs started before the patch keep their old commands
(assessment first, messages in turn) until their next continue-as-new. A life-safety rule
(`life_safety_severity`, a fall) does not wait for the model at all (patch `TELL_AT_ONCE`):
level 0's sends leave in the incident's first workflow task, ahead of the LLM call. An
acknowledgement with an ETA is followed up when the ETA runs out (patch `FOLLOW_UP`,
`workflows.incident_follow_up`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.incidents import IncidentActivities
    from riskflow.contracts.assessment import Assessment, AssessmentInput
    from riskflow.contracts.incidents import (
        AUTO_RESOLVER,
        INVALID_ACTION,
        LLM_ACTOR,
        IncidentFrame,
        IncidentGate,
        IncidentStart,
        IncidentState,
        IncidentView,
        OperatorAction,
    )
    from workflows import incident_plan as plan
    from workflows.assessment import RiskAssessmentWorkflow
    from workflows.incident_follow_up import FOLLOW_UP, IncidentFollowUps
    from workflows.incident_state import (
        ALARM_FIRST,
        MAX_SEEN,
        TELL_AT_ONCE,
        Purpose,
        S,
        quiet_since,
        wait_until,
    )
    from workflows.loop import first_attempt
    from workflows.policies import INFRA_RETRY


@workflow.defn
class IncidentWorkflow(IncidentFollowUps):
    @workflow.init
    def __init__(self, inp: IncidentStart) -> None:
        """The input, before any handler: Temporal runs a workflow task's signal and update
        handlers before `run` starts, and an operator's update sent as a run continues as
        new lands in the next run's first task; it must find the carried incident (and the
        patch's answer), not an incident "not open yet"."""
        super().__init__()
        self._inp = inp
        # Patches are asked here, before any local activity: asked after one, a replay can
        # ask in the workflow task before the one that recorded the marker (the SDK groups
        # local activity resolutions differently on replay) and be answered no.
        self._alarm_first = workflow.patched(ALARM_FIRST)
        self._tell_at_once = self._alarm_first and workflow.patched(TELL_AT_ONCE)
        self._follow_up = self._tell_at_once and workflow.patched(FOLLOW_UP)
        if inp.carried is not None:
            self._view = inp.carried.model_copy(update={"run_id": workflow.info().run_id})

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
        self._start_follow_up(action)
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

    # -- the run --------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: IncidentStart) -> IncidentView | None:
        # `__init__` took the input, the patch's answer and a carried view (handlers may have
        # changed it since)
        self._seen = list(inp.seen)
        self._pending = [*inp.pending, *self._pending]
        self._clear, self._newest = inp.clear, inp.newest
        for request in inp.sends:  # messages under way when the last run continued as new
            self._sends.start(request, inp.sends_since.get(request.idempotency_key))
        if inp.carried is None and not await self._open(inp):
            if not self._sends.idle():
                await workflow.wait_condition(self._sends.idle)
            return None
        while not self._v.state.closed:
            if self._may_continue_as_new(inp):
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._alarm_first:  # the frames so far go into the view, not the payload
                    await self._take_frames(inp)
                await self._flush()
                if self._settled():
                    workflow.continue_as_new(self._carry(inp))
            await self._take_frames(inp)
            await self._due(inp)
            await self._flush()
            if self._v.state.closed:
                break
            self._changed = False
            wait = self._next_wake(inp) - workflow.now()
            await wait_until(  # operator updates grow history too: their growth wakes it as well
                lambda: bool(self._pending) or self._changed or self._may_continue_as_new(inp),
                max(wait, timedelta(seconds=1)),
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._flush()
        if not self._sends.idle():  # the closing messages are delivered (or failed) ...
            # ... unless a new incident's frame comes first: this run holds the workflow id
            # until it ends, so the bridge's signal-with-start reaches it, not a new run
            await workflow.wait_condition(lambda: self._sends.idle() or bool(self._reopening(inp)))
            await self._flush()
            if not self._sends.idle():
                workflow.continue_as_new(self._fresh(inp))
        return self._view

    def _settled(self) -> bool:
        """Nothing would be cut off by continuing as new now: open, no assessment beside the
        loop and, after `ALARM_FIRST`, no handler and no record that came in during the
        flush before it (a flush that outlasts a workflow task lets the next one deliver an
        update; its operator would get an error). Otherwise the loop goes round once more."""
        if self._v.state.closed or self._assessing is not None:
            return False
        return not self._alarm_first or (workflow.all_handlers_finished() and not self._unflushed)

    def _may_continue_as_new(self, inp: IncidentStart) -> bool:
        """The history is long and no assessment runs beside the loop (it cannot be carried
        over). While one runs, a long history is no reason to wake: the assessment's end
        wakes the loop (`_changed`), which then continues as new; waking for it would spin
        the loop without yielding until Temporal fails the task as a deadlock."""
        return self._assessing is None and self._should_continue_as_new(inp)

    async def _open(self, inp: IncidentStart) -> bool:
        """The first frame (the start signal) opens the incident, unless it belongs to an
        incident that closed after it was captured (a redelivered old frame) and is no more
        severe than what that incident saw."""
        await wait_until(lambda: bool(self._pending), timedelta(minutes=5))
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
        if self._tells_at_once(inp, first):
            # Level 0's sends are scheduled in this workflow task, ahead of the LLM call. The
            # loop then waits for the first assessment as a lesser rule's does (no flush beside
            # the assessment's local activities: the SDK may replay side-by-side local
            # activities in another order than they ran, sdk-python issues 1578 and 1881).
            await self._catch_up(inp, plan.due_steps(self._v, inp.config, workflow.now()))
        self._start_assessment(inp, first, first.rule, "first")
        await wait_until(  # a fall arriving meanwhile ends the wait: the loop tells it now
            lambda: self._assessing is None or self._life_safety_pending(inp),
            timedelta(seconds=inp.config.notify_within_seconds),
        )
        return True

    def _life_safety_pending(self, inp: IncidentStart) -> bool:
        """After `TELL_AT_ONCE`: a life-safety frame waits to be taken (runs before it wait
        for the first assessment whatever comes)."""
        floor = inp.config.life_safety_severity
        return self._tell_at_once and any(frame.severity >= floor for frame in self._pending)

    def _tells_at_once(self, inp: IncidentStart, first: IncidentFrame) -> bool:
        """A life-safety rule is told before the model is asked (runs of a release before the
        `TELL_AT_ONCE` patch wait up to `notify_within_seconds` for the first assessment)."""
        return self._tell_at_once and first.severity >= inp.config.life_safety_severity

    # -- frames ---------------------------------------------------------------------------
    def _accept(self, inp: IncidentStart, frame: IncidentFrame) -> bool:
        """Keep a new matching frame; False for a duplicate or a clear frame."""
        key = plan.frame_key(frame)
        if key in self._seen:
            return False
        self._seen = [*self._seen, key][-MAX_SEEN:]
        if not frame.rule:
            self._clear = frame
            if self._follow_up:  # when it arrived: the camera's clock is not the server's
                self._set(clear_at=workflow.now())
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
        evicted = False
        try:
            try:
                result = await self._assess(inp, frame, situation)
            except ChildWorkflowError as err:
                if not self._alarm_first:
                    raise  # runs before the patch fail with it, as they did
                self._child_failed(err)
                result = None
            if not self._v.state.closed:
                await self._after(inp, result, purpose, frame)
        except GeneratorExit:  # the worker evicted the run from its cache: no workflow calls
            evicted = True
            raise
        finally:
            if self._alarm_first and not evicted:
                self._assessing, queued, self._queued = None, self._queued, None
                if queued is not None and not self._v.state.closed:
                    self._start_assessment(inp, *queued)
                self._changed = True

    def _may_dismiss(self, frame: IncidentFrame) -> bool:
        """A first assessment of "no risk" dismisses, except (after `TELL_AT_ONCE`) over a
        person who acknowledged meanwhile, or when a more severe rule than the assessed
        frame's came in since (a crowd's answer never dismisses the fall that followed)."""
        if not self._tell_at_once:
            return True
        view = self._v
        return view.state != S.ACKNOWLEDGED and view.rule_severity <= frame.severity

    def _child_failed(self, err: ChildWorkflowError) -> None:
        """The child assessment ended without an answer (terminated, timed out): recorded and
        counted as a failed assessment. Raised in the task beside the loop, it would only
        end that task, unseen."""
        self._set(assessments=self._v.assessments + 1)
        self._record("assessed", LLM_ACTOR, f"failed: {err.cause or err}"[:500])

    async def _after(
        self,
        inp: IncidentStart,
        result: Assessment | None,
        purpose: Purpose,
        frame: IncidentFrame,
    ) -> None:
        cfg = inp.config
        level = result.risk_level if result is not None else None
        if purpose == "first":
            if (
                result is not None
                and level is not None
                and level.rank <= cfg.dismiss_at_or_below.rank
                and self._may_dismiss(frame)
            ):
                await self._close(S.DISMISSED, "dismissed", LLM_ACTOR, result.summary)
            elif result is not None and self._alarm_first and self._v.steps_sent:
                self._tell("assessed", self._reached(), f"a{self._v.assessments}")
        elif purpose == "follow_up":
            await self._followed_up(inp, result, frame)
        elif purpose == "resolution" and result is not None and plan.confidently_gone(result, cfg):
            await self._close(S.RESOLVED, "resolved", AUTO_RESOLVER, result.summary[:300])

    async def _assess(
        self, inp: IncidentStart, frame: IncidentFrame, situation: str
    ) -> Assessment | None:
        """The assessment: its first attempt inline (`workflows.loop.first_attempt`), else the
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
            try:
                result = await workflow.execute_child_workflow(
                    RiskAssessmentWorkflow.run,
                    request.model_copy(update={"carried": carried}),
                    id=assessment_id,
                )
            except ChildWorkflowError as err:  # terminated, timed out: the incident goes on
                if not self._alarm_first:
                    raise
                self._set(assessments=self._v.assessments + 1)
                self._record("assessed", LLM_ACTOR, f"failed: {err.cause or err}"[:500])
                return None
        self._set(assessments=self._v.assessments + 1)
        if result.status != "assessed" or result.risk_level is None:
            self._record("assessed", LLM_ACTOR, f"failed: {result.failure_reason}"[:500])
            return None
        view, before = self._v, self._v.severity
        if frame.rule and not (self._alarm_first and view.state.closed):  # not a resolution check
            severity = view.severity
            if result.risk_level.rank > severity.rank or view.assessments == 1:
                severity = result.risk_level
            worse_since = self._tell_at_once and view.rule_severity > frame.severity
            if (self._alarm_first and view.assessments > 1) or worse_since:  # the rule's floor
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
        times.append(quiet_since(view) + timedelta(seconds=cfg.auto_resolve_after_seconds))
        step = plan.next_step(view, cfg)
        if step is not None and step.due is not None and view.state in (S.OPEN, S.NOTIFIED):
            times.append(step.due)
        reassess = plan.reassess_due(view, cfg, self._newest is not None)
        if reassess is not None:
            times.append(reassess)
        quiet_end = self._quiet_end(inp)
        if view.held and quiet_end is not None:
            times.append(quiet_end)
        follow_up = self._follow_up_due()
        if follow_up is not None:
            times.append(follow_up)
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
        follow_up = self._follow_up_due()
        if follow_up is not None and now >= follow_up:
            await self._follow_up_check(inp)
        while not self._alarm_first and self._v.state in (S.OPEN, S.NOTIFIED):
            step = plan.next_step(self._v, cfg)
            if step is None or step.due is None or step.due > workflow.now():
                break
            await self._escalate(inp, step)
        reassess = plan.reassess_due(self._v, cfg, self._newest is not None)
        if self._newest is not None and reassess is not None and reassess <= workflow.now():
            await self._run_assessment(inp, self._newest, self._newest.rule, "reassess")
        if now >= quiet_since(self._v) + timedelta(seconds=cfg.auto_resolve_after_seconds):
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
