"""The incident's state, records and messages, under `IncidentWorkflow` (`workflows.incident`):

- `IncidentBase`: the view (only the workflow changes it; `workflows.incident_plan` returns new
  ones), its timeline and events, the flush to Redis and the topic, continue-as-new.
- `IncidentNotices`: quiet hours, escalation steps, a missed ladder caught up, upgrades told to
  the levels reached, closes told; every message beside the loop (`Sends`, after the
  `ALARM_FIRST` patch) or, for runs started before it, one after the other in the loop.
- `Sends`: each message to each channel is a normal activity run beside the incident's loop,
  so a slow, throttled or dead channel delays nobody else; one that keeps failing ends as
  failed (`NOTIFY_SEND_RETRY`) and the level's fallback channels get the message; sends in
  flight at continue-as-new are carried over (the idempotency key makes a repeat of a
  delivered message answer `already_sent`).

Pure workflow code.
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
    from riskflow.config.incidents import quiet_until, quiet_until_v1
    from riskflow.contracts.incidents import (
        INVALID_TRANSITION,
        OTHER_INCIDENT,
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
    from riskflow.contracts.notifications import (
        NotificationKind,
        NotificationRequest,
        NotificationResult,
    )
    from workflows import incident_plan as plan
    from workflows.policies import (
        INFRA_RETRY,
        NOTIFY_RETRY,
        NOTIFY_SEND_GIVE_UP,
        NOTIFY_SEND_RETRY,
    )

# One attempt: a vendor that answers within its own deadline, or a connection that fails.
SEND_ATTEMPT_SECONDS = 30.0

Done = Callable[[NotificationRequest, NotificationResult | None, str], None]


class Sends:
    """Sends in flight, by idempotency key. `done(request, result, error)` is called when
    one ends: `result` when delivered (or already delivered), else None and the error."""

    def __init__(self, done: Done) -> None:
        self._done = done
        self._running: dict[str, NotificationRequest] = {}
        self._since: dict[str, datetime] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, request: NotificationRequest, since: datetime | None = None) -> None:
        """Send `request` beside the loop, first tried at `since` (now when None: a carried
        message keeps the time it spent); a key already in flight is not sent twice."""
        key = request.idempotency_key
        if key in self._running:
            return
        self._running[key] = request
        self._since[key] = since or workflow.now()
        task = asyncio.create_task(self._send(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> list[NotificationRequest]:
        """What has not ended yet, oldest first (continue-as-new carries it)."""
        return list(self._running.values())

    @property
    def since(self) -> dict[str, datetime]:
        """When each message in flight was first tried, by key (carried with it)."""
        return {key: self._since[key] for key in self._running}

    def idle(self) -> bool:
        return not self._running

    async def _send(self, request: NotificationRequest) -> None:
        key = request.idempotency_key
        left = self._since[key] + NOTIFY_SEND_GIVE_UP - workflow.now()
        if left <= timedelta(0):  # carried past its time: given up without another attempt
            self._ended(request, None, f"gave up after {NOTIFY_SEND_GIVE_UP}")
            return
        try:
            result = await workflow.execute_activity_method(
                NotifyActivities.notify,
                request,
                # Replay compares activity ids (not inputs): with the key, two messages
                # started in another order fail the replay instead of swapping outcomes.
                activity_id=key,
                start_to_close_timeout=timedelta(seconds=SEND_ATTEMPT_SECONDS),
                schedule_to_close_timeout=left,
                retry_policy=NOTIFY_SEND_RETRY,
            )
        except ActivityError as exc:
            self._ended(request, None, str(exc.cause or exc))
            return
        self._ended(request, result, "")

    def _ended(
        self, request: NotificationRequest, result: NotificationResult | None, error: str
    ) -> None:
        self._running.pop(request.idempotency_key, None)
        self._since.pop(request.idempotency_key, None)
        self._done(request, result, error)


ALARM_FIRST = "alarm-first"  # workflow.patched id: the behaviour described above
# After ALARM_FIRST: a life-safety rule's level 0 leaves before the model is asked (runs
# started before it wait up to `notify_within_seconds` for the first assessment).
TELL_AT_ONCE = "tell-at-once"
# Quiet hours computed on instants, safe across daylight-saving changes (runs that started
# before it keep `quiet_until_v1`).
QUIET_HOURS_DST_PATCH = "quiet-hours-dst"
MAX_SEEN = 512  # camera:frame keys remembered for deduplication
MAX_PENDING = 16  # frames continue-as-new carries, at most (coalesced beyond)
S = IncidentState
Purpose = str  # "first", "reassess", "resolution", "follow_up"


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
        self._tell_at_once = False
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

    def _sent(
        self, request: NotificationRequest, result: NotificationResult | None, error: str
    ) -> None:
        """A send beside the loop ended: a failure is recorded, and the level's fallback
        channels get the message as the incident is now (its state, assessment, severity);
        in runs of `TELL_AT_ONCE`, none when it was acknowledged or closed meanwhile."""
        self._changed = True
        if result is not None:
            return
        level = request.escalation_level
        detail = f"{request.channel} failed: {error}"[:500]
        if self._view is not None and request.incident_id == self._view.incident_id:
            self._record("notified", "system", detail, level)
        else:  # a closed incident's message, carried into a new incident's run
            workflow.logger.warning("%s: %s", request.incident_id, detail)
        if ":fallback:" in request.idempotency_key:
            return
        current = self._view is not None and request.incident_id == self._view.incident_id
        fallbacks = self._i.config.escalation[level].fallback_channels
        if fallbacks and current and self._tell_at_once and self._answered():
            # Somebody has it already (or it is over): a fallback "new incident, open" minutes
            # later would send a second responder to a closed scene.
            self._record("notified", "system", f"fallback not sent: {self._v.state.value}", level)
            return
        for channel in fallbacks:
            key = f"{request.idempotency_key}:fallback:{channel}"
            if current:  # what the incident is now, not what it was when the send began
                fresh = self._request(request.kind, level, "fallback", channel)
                self._sends.start(fresh.model_copy(update={"idempotency_key": key}))
            else:
                self._sends.start(
                    request.model_copy(update={"channel": channel, "idempotency_key": key})
                )

    def _request(
        self, kind: NotificationKind, level: int, name: str, channel: str
    ) -> NotificationRequest:
        request = plan.notification(self._i, self._v, kind, level, name, channel)
        if self._alarm_first and self._v.assessments == 0 and not self._v.summary:
            request.assessment_pending = True
            # The rule's own count: a crowd of six that became one fall is "fall: 1" (runs
            # opened before `rule_count` have only the count of any rule).
            count = self._v.rule_count or self._v.max_count
            request.detected = f"{self._v.rule}: {count} detection(s)"
            request.detected_count = count  # shown in the site's language
        return request

    def _answered(self) -> bool:
        """Acknowledged, or closed: a person has the incident, or it is over."""
        return self._v.state == IncidentState.ACKNOWLEDGED or self._v.state.closed

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

    def _reopening(self, inp: IncidentStart) -> list[IncidentFrame]:
        """The frames that reached this closed incident and open a new one (`plan.reopens`)."""
        cooldown = inp.config.dismissed_cooldown_seconds if self._v.state == S.DISMISSED else 0.0
        return [f for f in self._pending if plan.reopens(self._v, f, cooldown)]

    def _fresh(self, inp: IncidentStart) -> IncidentStart:
        """The next run's input when a new incident's frames reach this closed one while its
        messages are still under way: no view (the frames open a new incident, through the
        gate), those messages going on beside it."""
        pending = plan.coalesced(self._reopening(inp), MAX_PENDING)
        update: dict[str, object] = {"carried": None, "seen": [], "pending": pending}
        update |= {"clear": None, "newest": None}
        update |= {"sends": self._sends.in_flight, "sends_since": self._sends.since}
        return inp.model_copy(update=update)

    def _carry(self, inp: IncidentStart) -> IncidentStart:
        """The next run's input: the view, and bounded summaries of what is under way (never
        raw backlogs: the payload stays far below Temporal's 2 MB)."""
        pending = self._pending
        if self._alarm_first:
            pending = plan.coalesced(pending, MAX_PENDING)
        update = {"carried": self._v, "seen": self._seen, "pending": pending}
        update |= {"clear": self._clear, "newest": self._newest}
        if self._alarm_first:
            update |= {"sends": self._sends.in_flight, "sends_since": self._sends.since}
        return inp.model_copy(update=update)


async def wait_until(condition: Callable[[], bool], within: timedelta) -> None:
    """Until `condition` holds or `within` (a durable timer) passes."""
    with contextlib.suppress(asyncio.TimeoutError):
        await workflow.wait_condition(condition, timeout=within)


def quiet_since(view: IncidentView) -> datetime:
    """Since when the camera has shown nothing matching (or the last resolution check)."""
    return max(t for t in (view.opened_at, view.last_match_at, view.checked_at) if t is not None)


class IncidentNotices(IncidentBase):
    def _quiet_end(self, inp: IncidentStart) -> datetime | None:
        periods = inp.config.quiet_hours
        if not periods:
            return None
        # Runs from `TELL_AT_ONCE` on (asked in `__init__`) do not ask the older patch here,
        # after local activities, where a replay may answer no (README: Versioning).
        if self._tell_at_once or workflow.patched(QUIET_HOURS_DST_PATCH):
            return quiet_until(workflow.now(), periods, inp.timezone)
        return quiet_until_v1(workflow.now(), periods, inp.timezone)

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
        as sent. After `TELL_AT_ONCE`, steps due at the same moment as the highest (levels
        that share a time) are each sent: they are not a missed past."""
        if not due or self._v.state not in (S.OPEN, S.NOTIFIED):
            return
        *missed, last = due
        together = []  # after TELL_AT_ONCE: levels due at the same time as the last all go
        if self._tell_at_once:
            together = [step for step in missed if step.due == last.due]
            missed = [step for step in missed if step.due != last.due]
        if missed:
            names = [step.name for step in missed]
            self._set(steps_sent=[*self._v.steps_sent, *names])
            self._record("escalated", "system", f"caught up: {', '.join(names)} not sent")
        for step in together:
            await self._escalate(inp, step)
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
