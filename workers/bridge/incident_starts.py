"""The bridge's incident mode: a significant frame becomes signal-with-start of its camera's
incident (`IncidentWorkflow`, id `incident-{camera}-{family}`, conflict policy USE_EXISTING),
so a continuous scene is one incident however many debounce windows it spans; frames without
a match are passed (at most every `bridge.clear_signal_seconds` per camera) to the incidents
this bridge started, so their auto-resolve check sees the camera's newest clear view.

Signals stay bounded per incident: at most one frame per `bridge.incident_frame_seconds` of
capture time goes to an incident, unless it is more severe than the last one sent (a burst or
a backlog after a stall costs a few signals, never one per frame; Temporal advises a few
signals a second per execution at most)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import Client
from temporalio.common import Priority, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from riskflow.config.llm import AssessmentPolicy
from riskflow.config.settings import Settings
from riskflow.config.sites import site_of
from riskflow.contracts.events import DetectionEvent
from riskflow.contracts.incidents import IncidentFrame, IncidentStart, incident_workflow_id
from riskflow.priority import priority_key
from workers.common.significance import Situation
from workflows.incident import IncidentWorkflow

logger = logging.getLogger(__name__)

MAX_TRACKED_CAMERAS = 10_000


@dataclass(frozen=True)
class Signalled:
    """The last frame signalled to an incident: its capture time and rule severity."""

    captured_at: datetime
    severity: int


def left_out(last: Signalled | None, frame: Signalled, interval: timedelta) -> bool:
    """Whether `frame` can be left out of its incident: captured within `interval` after the
    last frame signalled to it and no more severe. An older frame (out of order) or the
    first is never left out."""
    if last is None or frame.severity > last.severity:
        return False
    return timedelta(0) <= frame.captured_at - last.captured_at < interval


class IncidentStarts:
    def __init__(self, client: Client, settings: Settings, policy: AssessmentPolicy) -> None:
        self._client = client
        self._settings = settings
        self._policy = policy
        self._console_url = settings.console.link_base()  # fixed for the process
        # camera -> (workflow ids this bridge signalled, monotonic time of the last clear frame)
        self._open: OrderedDict[str, tuple[set[str], float]] = OrderedDict()
        self._signalled: OrderedDict[str, Signalled] = OrderedDict()  # by workflow id

    def start_of(self, event: DetectionEvent, situation: Situation | None) -> IncidentStart | None:
        """The incident this situation opens or joins (its camera's site resolved once, here,
        and carried in the start), or None when its rule opens none."""
        if situation is None:
            return None
        settings = self._settings
        site = site_of(settings.sites, event.camera_id)
        config = site.incidents or settings.incidents
        if situation.severity < config.min_rule_severity:
            return None
        family = config.family(situation.rule)
        workflow_id = incident_workflow_id(event.camera_id, family)
        return IncidentStart(
            workflow_id=workflow_id,
            camera_id=event.camera_id,
            family=family,
            site_id=site.id,
            site_name=site.display_name,
            language=site.language,
            timezone=site.timezone,
            config=config,
            policy=self._policy,
            console_url=self._console_url,
        )

    def left_out(self, event: DetectionEvent, situation: Situation, start: IncidentStart) -> bool:
        """True when this frame is left out of its incident (see `left_out`); a frame that
        goes is taken as the incident's last at once, before its signal is sent, so frames
        the bridge handles side by side are judged against it."""
        interval = timedelta(seconds=self._settings.bridge.incident_frame_seconds)
        frame = Signalled(event.captured_at, situation.severity)
        if left_out(self._signalled.get(start.workflow_id), frame, interval):
            return True
        self._signalled_now(start.workflow_id, frame)
        return False

    def _signalled_now(self, workflow_id: str, frame: Signalled) -> None:
        last = self._signalled.pop(workflow_id, None)
        if last is not None and last.captured_at > frame.captured_at:
            frame = last  # an older frame (redelivered) does not move the window back
        self._signalled[workflow_id] = frame
        while len(self._signalled) > MAX_TRACKED_CAMERAS:
            self._signalled.popitem(last=False)

    async def signal_with_start(
        self, event: DetectionEvent, situation: Situation, start: IncidentStart | None = None
    ) -> None:
        """Start the camera's incident for this situation family (`start`, else `start_of`),
        at its rule's task-queue priority, or signal the running one (which keeps the priority
        it was started with). Raises what `Client.start_workflow` raises (the bridge
        retries or dead-letters); ValueError for a situation that opens no incident."""
        start = start or self.start_of(event, situation)
        if start is None:
            raise ValueError(f"{situation.rule} opens no incident on {event.camera_id}")
        workflow_id = start.workflow_id
        frame = IncidentFrame(
            event=event, rule=situation.rule, severity=situation.severity, count=situation.count
        )
        await self._client.start_workflow(
            IncidentWorkflow.run,
            start,
            id=workflow_id,
            task_queue=self._settings.temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal="frame",
            start_signal_args=[frame],
            priority=Priority(
                priority_key=priority_key(situation.severity, start.config.life_safety_severity)
            ),
        )
        self._signalled_now(workflow_id, Signalled(event.captured_at, situation.severity))
        ids, last = self._open.pop(event.camera_id, (set(), 0.0))
        self._open[event.camera_id] = ({*ids, workflow_id}, last)
        while len(self._open) > MAX_TRACKED_CAMERAS:
            self._open.popitem(last=False)

    async def clear(self, event: DetectionEvent) -> bool:
        """Pass a frame without a match to the camera's incidents (rate-limited); an incident
        that has closed meanwhile is forgotten. True when a signal was sent."""
        tracked = self._open.get(event.camera_id)
        now = time.monotonic()
        if tracked is None or now - tracked[1] < self._settings.bridge.clear_signal_seconds:
            return False
        ids, _ = tracked
        self._open[event.camera_id] = (ids, now)
        for workflow_id in sorted(ids):
            try:
                await self._client.get_workflow_handle(workflow_id).signal(
                    IncidentWorkflow.frame, IncidentFrame(event=event)
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    logger.warning("clear frame to %s not sent: %s", workflow_id, exc)
                    continue
                ids.discard(workflow_id)
            except RuntimeError as exc:  # Temporal unreachable: the next clear frame tries again
                logger.warning("clear frame to %s not sent: %s", workflow_id, exc)
        if not ids:
            self._open.pop(event.camera_id, None)
        return True
