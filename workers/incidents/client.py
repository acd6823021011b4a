"""What operator tools do with incidents: read their views from Redis, send operator actions
to the running incident as Temporal updates (`riskflow incidents ...`, the console)."""

from __future__ import annotations

from typing import Literal

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from riskflow.contracts.incidents import IncidentState, IncidentView, OperatorAction
from riskflow.errors import IncidentActionRefused, IncidentNotFound
from riskflow.infra.redis import RedisClient
from riskflow.names import (
    INCIDENT_INDEX,
    camera_open_incidents_key,
    incident_key,
    site_open_incidents_key,
)

Action = Literal["ack", "resolve", "dismiss", "comment"]
_UPDATES: dict[str, str] = {"ack": "ack", "resolve": "resolve", "dismiss": "dismiss"}


async def list_incidents(
    redis: RedisClient,
    site: str | None = None,
    camera: str | None = None,
    state: IncidentState | None = None,
    limit: int = 100,
) -> list[IncidentView]:
    """Newest first. Without `state`: the open incidents (of the site or camera, or all);
    with a state: the most recent incidents in that state (from the index of all)."""
    if state is None and camera:
        key = camera_open_incidents_key(camera)
    elif state is None and site:
        key = site_open_incidents_key(site)
    else:
        key = INCIDENT_INDEX
    scan = limit if state is None and key != INCIDENT_INDEX else max(limit * 20, 1000)
    ids = [_text(i) for i in await redis.zrevrange(key, 0, scan - 1)]
    views = [IncidentView.model_validate_json(raw) for raw in await _views(redis, ids)]
    wanted = [
        v
        for v in views
        if (site is None or v.site_id == site)
        and (camera is None or v.camera_id == camera)
        and (v.state == state if state is not None else not v.state.closed)
    ]
    return wanted[:limit]


async def show_incident(redis: RedisClient, incident_id: str) -> IncidentView:
    """The incident's current view; IncidentNotFound for an unknown id."""
    raw = await redis.get(incident_key(incident_id))
    if raw is None:
        raise IncidentNotFound(incident_id)
    return IncidentView.model_validate_json(raw)


async def act(
    client: Client, redis: RedisClient, incident_id: str, action: Action, by: OperatorAction
) -> IncidentState:
    """Send an operator action; the incident's new state. IncidentNotFound for an unknown
    id, IncidentActionRefused for an action its state does not allow (acking a resolved
    incident, an empty comment) or one that reaches another incident: the workflow id is
    the camera's (one per situation family), so the action carries `incident_id` and the
    workflow refuses it unless that is its current incident (no check-then-act here: the
    incident could close and the next one start between a check and the update)."""
    view = await show_incident(redis, incident_id)
    if view.state.closed and action != "comment":
        raise IncidentActionRefused(f"cannot {action} incident {incident_id}: it is {view.state}")
    handle = client.get_workflow_handle(view.workflow_id)
    meant = by.model_copy(update={"incident_id": incident_id})
    try:
        answer = await handle.execute_update(_UPDATES.get(action, action), meant)
        state = IncidentState(answer)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise IncidentActionRefused(message) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise IncidentActionRefused(f"incident {incident_id} is closed") from None
        raise
    return state


async def _views(redis: RedisClient, ids: list[str]) -> list[bytes | str]:
    if not ids:
        return []
    raws = await redis.mget([incident_key(i) for i in ids])
    return [raw for raw in raws if raw is not None]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
