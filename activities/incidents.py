"""The incident's records: its view in Redis (`riskflow.names.incident_key`, the open sets
per site and camera, an index), its lifecycle events on the `incident-events` topic, and
the gate that keeps a redelivered old frame from reopening a closed incident."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from importlib import resources

from temporalio import activity

from activities.aggregate import ResultPublisher
from riskflow.contracts.incidents import (
    AUTO_RESOLVER,
    LLM_ACTOR,
    IncidentEvent,
    IncidentGate,
    IncidentGateResult,
    IncidentRecord,
    IncidentState,
    IncidentView,
)
from riskflow.infra.metrics import (
    INCIDENT_ACK_SECONDS,
    INCIDENT_ESCALATIONS,
    INCIDENT_EVENTS,
    INCIDENT_RESOLVE_SECONDS,
    INCIDENTS_CLOSED,
    INCIDENTS_OPEN,
    CameraLabels,
)
from riskflow.infra.redis import FAIL_OPEN_SECONDS, RedisClient, store_outage
from riskflow.levels import RiskLevel
from riskflow.names import (
    INCIDENT_CHANGES,
    INCIDENT_INDEX,
    INCIDENT_OPEN_SEVERITY,
    INCIDENT_TOPIC,
    camera_open_incidents_key,
    incident_closed_key,
    incident_key,
    site_open_incidents_key,
)

_SCRIPT = resources.files("activities").joinpath("incidents.lua").read_text(encoding="utf-8")
CLOSED_TTL_SECONDS = 30 * 24 * 3600  # a closed incident's view, and its close marker
INDEX_MAX = 10_000
MAX_LEVEL_LABEL = 9


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class IncidentActivities:
    def __init__(
        self,
        redis: RedisClient,
        producer: ResultPublisher,
        camera_label: CameraLabels | None = None,
    ) -> None:
        self._redis = redis
        self._producer = producer
        self._camera_label = camera_label or CameraLabels()
        self._script = redis.register_script(_SCRIPT)

    @activity.defn(name="incident_gate")
    async def gate(self, gate: IncidentGate) -> IncidentGateResult:
        """Admitted unless the frame was captured at or before the close marker of the last
        incident of this workflow id (its close, plus a dismissal's cooldown) and its rule is
        no more severe than the most severe that incident saw: a cooldown or a close never
        hides a worse situation (a dismissed crowd, then a fall). A marker without a severity
        (written before it was recorded) hides every rule, as it did. Redis unreachable: the
        frame is admitted unchecked (an alarm never waits for Redis; at worst a frame of a
        closed incident, redelivered meanwhile, opens it again)."""
        try:
            async with asyncio.timeout(FAIL_OPEN_SECONDS):
                raw = await self._redis.get(incident_closed_key(gate.workflow_id))
        except Exception as exc:
            if not store_outage(exc):
                raise
            activity.logger.warning(
                "Redis unreachable (%s): the frame of %s is admitted without its close marker",
                exc,
                gate.workflow_id,
            )
            return IncidentGateResult(admitted=True)
        if raw is None:
            return IncidentGateResult(admitted=True)
        until_ms, _, severity = _text(raw).partition(":")
        until = datetime.fromtimestamp(int(until_ms) / 1000, UTC)
        worse = bool(severity) and gate.severity > int(severity)
        return IncidentGateResult(admitted=worse or gate.captured_at > until, closed_until=until)

    @activity.defn(name="record_incident")
    async def record(self, record: IncidentRecord) -> bool:
        """Write the view (only if newer), publish the events (at least once: consumers dedupe
        on `event_id`); True when this write was the first of its version."""
        view = record.view
        closed = view.state.closed
        closed_until = 0
        if closed and view.closed_at is not None:
            last = max([view.closed_at, *(f.captured_at for f in view.recent_frames)])
            closed_until = _ms(last) + int(record.cooldown_seconds * 1000)
        reply = await self._script(
            keys=[
                incident_key(view.incident_id),
                site_open_incidents_key(view.site_id),
                camera_open_incidents_key(view.camera_id),
                INCIDENT_INDEX,
                incident_closed_key(view.workflow_id),
                INCIDENT_OPEN_SEVERITY,
                INCIDENT_CHANGES,
            ],
            args=[
                view.model_dump_json(),
                view.version,
                view.incident_id,
                _ms(view.opened_at),
                int(closed),
                closed_until,
                CLOSED_TTL_SECONDS,
                INDEX_MAX,
                view.severity.value,
                view.rule_severity,
            ],
        )
        for event in record.events:
            await self._producer.send_and_wait(
                INCIDENT_TOPIC, value=event.model_dump_json().encode(), key=view.camera_id.encode()
            )
        applied = bool(reply and int(reply[0]))
        if applied:
            _open_gauge(reply[1:])
            for event in record.events:
                self._observe(view, event)
        return applied

    def _observe(self, view: IncidentView, event: IncidentEvent) -> None:
        kind, level = event.kind, event.escalation_level
        INCIDENT_EVENTS.labels(kind).inc()
        seconds = (event.at - view.opened_at).total_seconds()
        if kind == "acknowledged":
            INCIDENT_ACK_SECONDS.observe(seconds)
        elif kind == "resolved":
            by = "auto" if view.closed_by == AUTO_RESOLVER else "operator"
            INCIDENT_RESOLVE_SECONDS.labels(by).observe(seconds)
        elif kind == "escalated" and level >= 0:
            INCIDENT_ESCALATIONS.labels(str(min(level, MAX_LEVEL_LABEL))).inc()
        if kind in ("resolved", "dismissed", "expired"):
            INCIDENTS_CLOSED.labels(self._camera_label(view.camera_id), _outcome(view)).inc()


def _open_gauge(counts: list[object]) -> None:
    """Open incidents by severity, as the script counted them in Redis."""
    pairs = zip(counts[::2], counts[1::2], strict=False)
    by_severity = {_text(name): int(_text(count)) for name, count in pairs}
    for severity in RiskLevel:
        INCIDENTS_OPEN.labels(severity.value).set(by_severity.get(severity.value, 0))


def _outcome(view: IncidentView) -> str:
    if view.state == IncidentState.DISMISSED:
        return "no_risk" if view.closed_by == LLM_ACTOR else "false_alarm"
    return view.state.value


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
