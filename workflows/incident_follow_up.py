"""Acknowledged is not done: an acknowledgement with an ETA ("On my way, 10 minutes") starts
a durable follow-up (patch `FOLLOW_UP`, asked once per run, in `__init__`). When the ETA runs
out and the incident is still only acknowledged, the camera is looked at again:

- a matching frame arrived since the acknowledgement: the hazard is still there;
- else the newest clear frame since then goes to the resolution check (the LLM: is the hazard
  still present?): a confident no resolves the incident, the frames before and after in the
  timeline; anything else: still there;
- no frame at all since then: nothing says it is gone, so still there.

Still there: the incident goes back to notified ("acknowledged 12 min ago by wang.gong, still
present: ..." in the timeline), every level reached is told (`still_present`), and the ladder
resumes from the level reached (a level already due goes at once). Pure: no I/O, no clock
but `workflow.now()`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from riskflow.contracts.assessment import Assessment
    from riskflow.contracts.incidents import (
        AUTO_RESOLVER,
        IncidentFrame,
        IncidentStart,
        OperatorAction,
    )
    from workflows import incident_plan as plan
    from workflows.incident_state import IncidentNotices, Purpose, S

FOLLOW_UP = "ack-follow-up"  # workflow.patched id: the behaviour described above
FOLLOW_UP_RETRY = timedelta(seconds=30)  # an assessment running: the check comes after it


class IncidentFollowUps(IncidentNotices):
    _follow_up: bool = False

    async def _run_assessment(
        self, inp: IncidentStart, frame: IncidentFrame, situation: str, purpose: Purpose
    ) -> None:
        raise NotImplementedError  # IncidentWorkflow's

    def _start_follow_up(self, action: OperatorAction) -> None:
        """An acknowledgement with an ETA: the camera is checked again when it runs out."""
        if self._follow_up and action.eta_minutes:
            self._set(follow_up_at=workflow.now() + timedelta(minutes=action.eta_minutes))

    def _follow_up_due(self) -> datetime | None:
        view = self._v
        if not self._follow_up or view.state != S.ACKNOWLEDGED:
            return None
        return view.follow_up_at

    async def _follow_up_check(self, inp: IncidentStart) -> None:
        """The ETA ran out (see the module docstring). Frames count by when they arrived
        (workflow time), never by the camera's clock. While an assessment runs beside the loop
        the check waits for it (a queued check could be replaced by a later frame's)."""
        if self._assessing is not None:
            self._set(follow_up_at=workflow.now() + FOLLOW_UP_RETRY)
            return
        view = self._v
        acknowledged = view.acknowledged_at or view.opened_at
        self._set(follow_up_at=None)
        if view.last_match_at is not None and view.last_match_at > acknowledged:
            newest = view.recent_frames[-1] if view.recent_frames else None
            seen = f"frame {newest.frame_id} shows {newest.rule}" if newest else view.rule
            await self._resume(seen)
            return
        clear = self._clear
        if clear is not None and view.clear_at is not None and view.clear_at > acknowledged:
            self._clear = None
            hazard = view.rule or view.family
            situation = f"follow-up: is the {hazard} hazard still present?"
            await self._run_assessment(inp, clear, situation, "follow_up")
            return
        await self._resume("no frame since the acknowledgement")

    async def _followed_up(
        self, inp: IncidentStart, result: Assessment | None, frame: IncidentFrame
    ) -> None:
        """The follow-up's check of a clear frame answered (None: it failed)."""
        level = result.risk_level if result is not None else None
        after = frame.event.frame_id
        if result is not None and plan.confidently_gone(result, inp.config):
            before = self._v.recent_frames[-1].frame_id if self._v.recent_frames else "-"
            text = f"follow-up: gone (frame {before} -> {after}): {result.summary}"
            await self._close(S.RESOLVED, "resolved", AUTO_RESOLVER, text[:300])
            return
        answer = level.value if level is not None else "no answer"
        await self._resume(f"frame {after} checked: {answer}")

    async def _resume(self, why: str) -> None:
        view = self._v
        if view.state != S.ACKNOWLEDGED:
            return
        since = workflow.now() - (view.acknowledged_at or view.opened_at)
        minutes = int(since.total_seconds() // 60)
        text = f"acknowledged {minutes} min ago by {view.acknowledged_by}, still present: {why}"
        self._transition(S.NOTIFIED, "escalated", "system", text[:500])
        self._tell("still_present", self._reached(), f"still{int(workflow.now().timestamp())}")
