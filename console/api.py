"""The JSON API (`/api/...`, OpenAPI at `/api/openapi.json`): cameras, latest assessments,
snapshots, alerts, the key pool, health, live tile events (server-sent events), and the
incident action endpoint's role and CSRF checks (the incidents themselves: `incidents.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from redis.exceptions import RedisError
from sse_starlette.sse import EventSourceResponse

from console.auth import Principal, check_csrf, require_login, require_role
from console.data import read_key_pool, read_snapshot, view_of
from console.incidents import incident_exists, open_incident_counts
from console.models import (
    CAMERA_ID_PATTERN,
    ActionResult,
    AssessmentView,
    CameraView,
    HealthView,
    KeyPoolView,
    Page,
    Problem,
)
from console.state import ConsoleState, state_of
from console.views import Filters, alert_page, camera_page, camera_view
from riskflow.console_config import Role
from riskflow.models import RiskLevel

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
State = Annotated[ConsoleState, Depends(state_of)]


class IncidentAction(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    FALSE_ALARM = "false_alarm"
    COMMENT = "comment"


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
    """Server-sent events: `tile` with a CameraView (JSON) whenever a camera's latest changes."""

    async def stream() -> AsyncIterator[dict[str, str]]:
        async with state.live.subscribe() as queue:
            yield {"event": "hello", "data": "{}"}
            while True:
                assessment = await queue.get()
                counts = await open_incident_counts([assessment.camera_id])
                tile = camera_view(
                    state.settings, assessment.camera_id, assessment, counts[assessment.camera_id]
                )
                yield {"event": "tile", "data": tile.model_dump_json()}

    return EventSourceResponse(stream(), ping=15)


@router.post(
    "/incidents/{incident_id}/actions/{action}",
    response_model=ActionResult,
    dependencies=[Depends(check_csrf)],
    responses={403: {"model": Problem}, 404: {"model": Problem}, 409: {"model": Problem}},
)
async def incident_action(
    principal: Annotated[Principal, Depends(require_role(Role.OPERATOR))],
    incident_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")],
    action: IncidentAction,
) -> ActionResult:
    """Act on an incident (operators and admins). PLACEHOLDER until issue 17: no incident
    exists yet, so every id answers 404 after the role and CSRF checks."""
    del principal, action
    if not await incident_exists(incident_id):
        raise HTTPException(404, f"no open incident {incident_id!r}")
    raise HTTPException(409, "incident actions arrive with the incident workflow")
