"""The incident workflow's state and records (`IncidentBase`): the view (only the workflow
changes it; `workflows.incident_plan` returns new ones), its timeline and events, the flush to
Redis and the topic, continue-as-new. Pure workflow code."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.incidents import IncidentActivities
    from riskflow.contracts.incidents import (
        INVALID_TRANSITION,
        EventKind,
        IncidentEvent,
        IncidentFrame,
        IncidentRecord,
        IncidentStart,
        IncidentState,
        IncidentView,
        OperatorAction,
        TimelineEntry,
    )
    from riskflow.contracts.notifications import NotificationRequest, NotificationResult
    from workflows import incident_plan as plan
    from workflows.incident_sends import Sends
    from workflows.policies import INFRA_RETRY

ALARM_FIRST = "alarm-first"  # workflow.patched id: the behaviour described above
MAX_SEEN = 512  # camera:frame keys remembered for deduplication
MAX_PENDING = 16  # frames continue-as-new carries, at most (coalesced beyond)
S = IncidentState
Purpose = str  # "first", "reassess", "resolution"


class IncidentBase:
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

    # -- state and records ----------------------------------------------------------------
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

    def _transition(self, state: IncidentState, kind: EventKind, actor: str, text: str) -> None:
        self._set(state=state)
        self._changed = True
        self._record(kind, actor, text)

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


async def wait_until(condition: Callable[[], bool], within: timedelta) -> None:
    """Until `condition` holds or `within` (a durable timer) passes."""
    with contextlib.suppress(asyncio.TimeoutError):
        await workflow.wait_condition(condition, timeout=within)


def quiet_since(view: IncidentView) -> datetime:
    """Since when the camera has shown nothing matching (or the last resolution check)."""
    return max(t for t in (view.opened_at, view.last_match_at, view.checked_at) if t is not None)
