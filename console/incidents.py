"""Incidents as the console shows them: read from the incidents' Redis views, acted on through the
incident workflow's updates (`workers.incidents.client`).

Redis views (`riskflow.names`): `incident_key(id)` (JSON `IncidentView`), the open ids per
camera and site (`camera_open_incidents_key`, `site_open_incidents_key`: sorted sets scored by
opened, ms), `INCIDENT_OPEN_SEVERITY` (hash: every open id) and `INCIDENT_INDEX` (all ids, by
opened). A view that does not parse is logged and left out, never an error page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError
from temporalio.client import Client

from console.data import parse_assessment, view_of
from console.models import AssessmentView, IncidentDetail, IncidentItem, Page
from riskflow.contracts.incidents import IncidentState, IncidentView, OperatorAction
from riskflow.infra.redis import RedisClient
from riskflow.names import (
    INCIDENT_OPEN_SEVERITY,
    camera_alerts_key,
    camera_latest_key,
    camera_open_incidents_key,
    incident_key,
    site_open_incidents_key,
)
from workers.incidents.client import Action, act, list_incidents, show_incident

logger = logging.getLogger(__name__)

INCIDENTS_AVAILABLE = True
CLOSED_SCAN = 1000  # closed incidents of one state: the newest this many are listed


class IncidentAction(StrEnum):
    """The console's action names (URL path) and the incident workflow's updates."""

    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    FALSE_ALARM = "false_alarm"
    COMMENT = "comment"

    @property
    def update(self) -> Action:
        names: dict[str, Action] = {
            "acknowledge": "ack",
            "resolve": "resolve",
            "false_alarm": "dismiss",
            "comment": "comment",
        }
        return names[self.value]


@dataclass(frozen=True)
class IncidentFilters:
    site: str | None = None
    camera: str | None = None
    state: IncidentState | None = None
    offset: int = 0
    limit: int = 50


async def open_incident_counts(redis: RedisClient, camera_ids: Iterable[str]) -> dict[str, int]:
    """Open incidents per camera id: {camera_id: count}, one pipelined round trip."""
    cameras = list(camera_ids)
    if not cameras:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for camera in cameras:
            pipe.zcard(camera_open_incidents_key(camera))
        rows = await pipe.execute()
    return {camera: int(n) for camera, n in zip(cameras, rows, strict=True)}


def sort_key(view: IncidentView) -> tuple[int, float, str]:
    """Most severe first, then oldest first (the one waiting longest), then id."""
    return (-view.severity.rank, view.opened_at.timestamp(), view.incident_id)


def item_of(view: IncidentView) -> IncidentItem:
    return IncidentItem(
        **view.model_dump(
            include={
                "incident_id",
                "camera_id",
                "site_id",
                "family",
                "state",
                "severity",
                "rule",
                "summary",
                "opened_at",
                "updated_at",
                "acknowledged_by",
                "escalation_level",
            }
        )
    )


async def _open_ids(redis: RedisClient, filters: IncidentFilters) -> list[str]:
    if filters.camera:
        raw = await redis.zrange(camera_open_incidents_key(filters.camera), 0, -1)
    elif filters.site:
        raw = await redis.zrange(site_open_incidents_key(filters.site), 0, -1)
    else:
        raw = await redis.hkeys(INCIDENT_OPEN_SEVERITY)
    return [_text(i) for i in raw]


async def _read_views(redis: RedisClient, ids: list[str]) -> list[IncidentView]:
    if not ids:
        return []
    views = []
    for incident_id, raw in zip(ids, await redis.mget([incident_key(i) for i in ids]), strict=True):
        if raw is None:
            continue
        try:
            views.append(IncidentView.model_validate_json(raw))
        except ValidationError as exc:
            logger.warning("incident %s has no readable view: %s", incident_id, exc.errors()[:1])
    return views


async def incident_page(redis: RedisClient, filters: IncidentFilters) -> Page[IncidentItem]:
    """Without a closed `state`: the open incidents (of the site or camera), most severe
    first, then oldest first. With a closed state: the newest `CLOSED_SCAN` in that state."""
    if filters.state is not None and filters.state.closed:
        views = await list_incidents(
            redis, filters.site, filters.camera, filters.state, limit=CLOSED_SCAN
        )
    else:
        views = [
            v
            for v in await _read_views(redis, await _open_ids(redis, filters))
            if not v.state.closed
            and (filters.site is None or v.site_id == filters.site)
            and (filters.camera is None or v.camera_id == filters.camera)
            and (filters.state is None or v.state == filters.state)
        ]
    views.sort(key=sort_key)
    shown = views[filters.offset : filters.offset + filters.limit]
    return Page[IncidentItem](
        items=[item_of(v) for v in shown],
        total=len(views),
        offset=filters.offset,
        limit=filters.limit,
    )


async def incident_detail(redis: RedisClient, incident_id: str) -> IncidentDetail:
    """The incident's view with the assessments still in the camera's `alerts:{id}` and
    `camera:{id}:latest` (each with its summary, hazards and recommended actions), oldest
    first. IncidentNotFound for an unknown id."""
    view = await show_incident(redis, incident_id)
    return IncidentDetail(incident=view, assessments=await _assessments_of(redis, view, depth=100))


async def _assessments_of(
    redis: RedisClient, view: IncidentView, depth: int
) -> list[AssessmentView]:
    prefix = f"{view.incident_id}-a"
    alerts_key = camera_alerts_key(view.camera_id)
    latest_key = camera_latest_key(view.camera_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lrange(alerts_key, 0, depth - 1)
        pipe.get(latest_key)
        alerts, latest = await pipe.execute()
    found = {}
    for raw, where in [*((a, alerts_key) for a in alerts), (latest, latest_key)]:
        parsed = parse_assessment(raw, where)
        if parsed is not None and parsed.assessment_id.startswith(prefix):
            found[parsed.assessment_id] = parsed
    ordered = sorted(found.values(), key=lambda a: (a.assessed_at, a.assessment_id))
    return [view_of(a) for a in ordered]


async def act_on(
    client: Client, redis: RedisClient, incident_id: str, action: IncidentAction, by: OperatorAction
) -> IncidentState:
    """Send the action as the incident workflow's update; its new state. IncidentNotFound,
    IncidentActionRefused (the state does not allow it) as `workers.incidents.client.act`."""
    return await act(client, redis, incident_id, action.update, by)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
