"""The JSON API (`/api/...`, OpenAPI at `/api/openapi.json`): cameras, latest assessments,
snapshots, alerts, the key pool, health, incidents (list, detail, operator actions through
the incident workflow's updates), live tile and incident-list events (server-sent events)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from redis.exceptions import RedisError
from sse_starlette.sse import EventSourceResponse, SendTimeoutError
from starlette.types import Message, Receive, Scope, Send
from temporalio.service import RPCError

from console.auth import Principal, check_csrf, require_login, require_role
from console.data import read_key_pool, read_snapshot, view_of
from console.incidents import (
    IncidentAction,
    IncidentFilters,
    act_on,
    incident_detail,
    incident_page,
)
from console.live import Dropped, TileChange
from console.models import (
    CAMERA_ID_PATTERN,
    ActionBody,
    ActionResult,
    AssessmentView,
    CameraView,
    HealthView,
    IncidentDetail,
    IncidentItem,
    KeyPoolView,
    Page,
    Problem,
)
from console.state import ConsoleState, state_of
from console.views import Filters, alert_page, camera_page, camera_view
from riskflow.config.console import Role
from riskflow.contracts.incidents import IncidentState, OperatorAction
from riskflow.errors import IncidentActionRefused, IncidentNotFound
from riskflow.infra.metrics import CONSOLE_STREAMS_DROPPED
from riskflow.levels import RiskLevel
from workers.incidents.client import show_incident

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "not logged in"},
    422: {"model": Problem, "description": "bad input"},
}

health_router = APIRouter(prefix="/api", tags=["health"])
router = APIRouter(prefix="/api", dependencies=[Depends(require_login)], responses=ERRORS)

CameraId = Annotated[str, Path(pattern=CAMERA_ID_PATTERN, description="camera id")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")]
Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
SiteFilter = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
CameraFilter = Annotated[str | None, Query(pattern=CAMERA_ID_PATTERN)]
LevelFilter = Annotated[RiskLevel | None, Query(description="at least this risk level")]
StateFilter = Annotated[
    IncidentState | None, Query(description="this state (default: every open incident)")
]
IncidentId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,200}$", description="incident id")]
State = Annotated[ConsoleState, Depends(state_of)]


@health_router.get("/health", response_model=HealthView)
async def health(state: State) -> HealthView:
    """Liveness without login: whether Redis answers."""
    try:
        await state.redis.ping()
    except (RedisError, OSError):
        return HealthView(status="degraded", redis=False)
    return HealthView(status="ok", redis=True)


@router.get("/cameras", response_model=Page[CameraView])
async def cameras(
    state: State,
    site: SiteFilter = None,
    min_level: LevelFilter = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> Page[CameraView]:
    """Cameras with their latest assessment, in site order; filter by site and level."""
    filters = Filters(site=site, min_level=min_level, offset=offset, limit=limit)
    return await camera_page(state.settings, state.redis, state.live.cameras, filters)


@router.get("/cameras/{camera_id}", response_model=CameraView, responses={404: {"model": Problem}})
async def camera(state: State, camera_id: CameraId) -> CameraView:
    page = await camera_page(
        state.settings, state.redis, state.live.cameras, Filters(camera=camera_id, limit=1)
    )
    if not page.items:
        raise HTTPException(404, f"no camera {camera_id!r}")
    return page.items[0]


@router.get(
    "/cameras/{camera_id}/latest",
    response_model=AssessmentView,
    responses={404: {"model": Problem}},
)
async def latest(state: State, camera_id: CameraId) -> AssessmentView:
    """The camera's newest assessment (`camera:{id}:latest`)."""
    found = await state.latest(camera_id)
    if found is None:
        raise HTTPException(404, f"camera {camera_id!r} has no assessment yet")
    return view_of(found)


@router.get(
    "/cameras/{camera_id}/snapshot",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Problem}},
)
async def snapshot(state: State, camera_id: CameraId) -> Response:
    """The JPEG of the camera's latest assessment, while the edge's copy lives in Redis."""
    data = await read_snapshot(state.redis, camera_id)
    if data is None:
        raise HTTPException(404, f"camera {camera_id!r} has no snapshot in store")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private"})


@router.get("/alerts", response_model=Page[AssessmentView])
async def alerts(
    state: State,
    camera: CameraFilter = None,
    site: SiteFilter = None,
    min_level: LevelFilter = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> Page[AssessmentView]:
    """Alerts (`alerts:{id}`), newest first; filter by camera, site and level."""
    filters = Filters(site=site, camera=camera, min_level=min_level, offset=offset, limit=limit)
    return await alert_page(state.settings, state.redis, state.live.cameras, filters)


@router.get("/keypool", response_model=KeyPoolView)
async def keypool(state: State) -> KeyPoolView:
    """Keys (ids, never secrets) and quota groups: use, cooldowns, disabled reasons."""
    return await read_key_pool(state.redis, state.settings.keys)


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(state: State) -> EventSourceResponse:
    """Server-sent events: `tile` with a CameraView (JSON) whenever a camera's latest or its
    open-incident count changes; `incidents` (no data) whenever an open incident opens,
    changes or closes (read `/api/incidents` again)."""

    async def stream() -> AsyncIterator[dict[str, str]]:
        async with state.live.subscribe() as queue:
            yield {"event": "hello", "data": "{}"}
            while True:
                change = await queue.get()
                if isinstance(change, Dropped):
                    return  # too far behind: the browser reconnects and reloads its state
                if not isinstance(change, TileChange):
                    yield {"event": "incidents", "data": "{}"}
                    continue
                tile = camera_view(
                    state.settings, change.camera_id, change.latest, change.open_incidents
                )
                yield {"event": "tile", "data": tile.model_dump_json()}

    return _LiveStream(stream(), state.settings.console.stream_send_timeout_seconds)


class _LiveStream(EventSourceResponse):
    """Any send the browser takes longer than `send_timeout` seconds to take (an event, a
    ping, or the stream's end, which sse-starlette's own `send_timeout` does not bound) ends
    the response: counted, not an error. The connection is then closed under it."""

    def __init__(self, stream: AsyncIterator[dict[str, str]], send_timeout: float) -> None:
        super().__init__(stream, ping=15)
        self._deadline = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def bounded(message: Message) -> None:
            with anyio.move_on_after(self._deadline) as waited:
                await send(message)
            if waited.cancelled_caught:
                raise SendTimeoutError

        try:
            await super().__call__(scope, receive, bounded)
        except SendTimeoutError:
            CONSOLE_STREAMS_DROPPED.labels(reason="send_timeout").inc()
            logger.info("a live stream's browser took no event for %.0f s: ended", self._deadline)


@router.get("/incidents", response_model=Page[IncidentItem])
async def incidents(
    state: State,
    site: SiteFilter = None,
    camera: CameraFilter = None,
    incident_state: Annotated[StateFilter, Query(alias="state")] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[IncidentItem]:
    """Open incidents, most severe first, then oldest first; filter by site, camera and
    state (a closed state lists the newest incidents in it)."""
    filters = IncidentFilters(site, camera, incident_state, offset, limit)
    return await incident_page(state.redis, filters)


@router.get(
    "/incidents/{incident_id}", response_model=IncidentDetail, responses={404: {"model": Problem}}
)
async def incident(state: State, incident_id: IncidentId) -> IncidentDetail:
    """The incident with its timeline and its assessments."""
    try:
        return await incident_detail(state.redis, incident_id)
    except IncidentNotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.post(
    "/incidents/{incident_id}/actions/{action}",
    response_model=ActionResult,
    dependencies=[Depends(check_csrf)],
    responses={
        400: {"model": Problem, "description": "a body that cannot be read"},
        403: {"model": Problem},
        404: {"model": Problem},
        409: {"model": Problem, "description": "the incident's state does not allow it"},
        503: {"model": Problem, "description": "Temporal is unreachable"},
    },
)
async def incident_action(
    state: State,
    principal: Annotated[Principal, Depends(require_role(Role.OPERATOR))],
    incident_id: IncidentId,
    action: IncidentAction,
    body: ActionBody | None = None,
) -> ActionResult:
    """Act on an incident (operators and admins) through the incident workflow's update;
    the answer is the incident's new state. 409 when its state does not allow the action
    (e.g. acknowledging a resolved incident, an empty comment). `eta_minutes` is read by
    acknowledge only."""
    eta = body.eta_minutes if body and action == IncidentAction.ACKNOWLEDGE else None
    by = OperatorAction(by=principal.name, text=body.text if body else "", eta_minutes=eta)
    try:
        await show_incident(state.redis, incident_id)  # an unknown id never needs Temporal
        client = await state.temporal()
        new_state = await act_on(client, state.redis, incident_id, action, by)
    except IncidentNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except IncidentActionRefused as exc:
        raise HTTPException(409, str(exc)) from None
    except (RuntimeError, RPCError) as exc:  # Temporal unreachable or failing
        raise HTTPException(503, f"Temporal is unreachable: {exc}") from None
    return ActionResult(
        ok=True,
        message=f"{action.value}: {new_state.value}",
        incident_id=incident_id,
        state=new_state,
    )
