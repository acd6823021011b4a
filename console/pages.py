"""The HTML pages: login, camera grid, incidents (list and detail), alerts, key pool, language.

Every page but the login page needs a session; without one the browser is sent to `/login`.
Every POST checks the CSRF token. Templates get words in the request's language (`i18n`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console.auth import (
    LoginThrottled,
    Principal,
    authenticator,
    check_csrf,
    csrf_token,
    principal_of,
)
from console.data import read_key_pool
from console.i18n import LANG_COOKIE, LANGUAGES, pick_language, words
from console.incidents import (
    INCIDENTS_AVAILABLE,
    IncidentAction,
    IncidentFilters,
    incident_detail,
    incident_page,
)
from console.models import CAMERA_ID_PATTERN
from console.state import ConsoleState, state_of
from console.views import Filters, alert_page, camera_page
from riskflow.config.console import Role
from riskflow.contracts.incidents import IncidentState
from riskflow.errors import IncidentNotFound

router = APIRouter(include_in_schema=False)
State = Annotated[ConsoleState, Depends(state_of)]
PAGE_SIZE = 1000
INCIDENT_PAGE_SIZE = 50


class LoginRequired(Exception):
    """Raised by page dependencies; the app answers with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def page_login(request: Request) -> Principal:
    principal = principal_of(request)
    if principal is None:
        raise LoginRequired(request.url.path)
    return principal


User = Annotated[Principal, Depends(page_login)]


def _safe_next(path: str) -> str:
    """Only local paths: `//evil.example` or `https://...` become `/`."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def render(
    state: ConsoleState,
    request: Request,
    name: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    lang = pick_language(request)
    base = {
        "t": words(lang),
        "lang": lang,
        "languages": LANGUAGES,
        "csrf": csrf_token(request),
        "user": principal,
        "can_act": bool(principal and principal.role.allows(Role.OPERATOR)),
        "incidents_available": INCIDENTS_AVAILABLE,
        "now": datetime.now(UTC),
        "path": request.url.path,
    }
    return state.templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )


@router.get("/login", response_class=HTMLResponse)
async def login_page(state: State, request: Request, next: str = "/") -> HTMLResponse:
    return render(state, request, "login.html", None, next_path=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse, dependencies=[Depends(check_csrf)])
async def login(
    state: State,
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    next_path: Annotated[str, Form(alias="next", max_length=2000)] = "/",
) -> Response:
    t = words(pick_language(request))
    try:
        principal = authenticator(request).login(username, password)
    except LoginThrottled as exc:
        page = render(state, request, "login.html", None, 429, next_path="/", error=t["throttled"])
        page.headers["Retry-After"] = str(exc.retry_after_seconds)
        return page
    if principal is None:
        return render(
            state,
            request,
            "login.html",
            None,
            401,
            next_path=_safe_next(next_path),
            error=t["bad_login"],
        )
    request.session.clear()  # a new session: no fixation
    request.session["user"] = principal.name
    csrf_token(request)
    return RedirectResponse(_safe_next(next_path), status_code=303)


@router.post("/logout", dependencies=[Depends(check_csrf)])
async def logout(request: Request) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.post("/lang", dependencies=[Depends(check_csrf)])
async def set_language(
    request: Request,
    lang: Annotated[str, Form()],
    next_path: Annotated[str, Form(alias="next", max_length=2000)] = "/",
) -> RedirectResponse:
    if lang not in LANGUAGES:
        raise HTTPException(422, f"unknown language {lang!r}: one of {list(LANGUAGES)}")
    response = RedirectResponse(_safe_next(next_path), status_code=303)
    response.set_cookie(
        LANG_COOKIE, lang, max_age=365 * 24 * 3600, httponly=True, samesite="strict"
    )
    return response


@router.get("/", response_class=HTMLResponse)
async def cameras_page(state: State, request: Request, user: User) -> HTMLResponse:
    page = await camera_page(
        state.settings, state.redis, state.live.cameras, Filters(limit=PAGE_SIZE)
    )
    sites: dict[str, list[Any]] = {}
    for tile in page.items:
        sites.setdefault(tile.site_name, []).append(tile)
    return render(state, request, "cameras.html", user, sites=sites, total=page.total)


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(
    state: State, request: Request, user: User, offset: int = 0, camera: str | None = None
) -> HTMLResponse:
    offset = max(0, min(offset, 1_000_000))
    known = camera if camera in state.live.cameras else None
    page = await alert_page(
        state.settings,
        state.redis,
        state.live.cameras,
        Filters(camera=known, offset=offset, limit=50),
    )
    return render(state, request, "alerts.html", user, page=page, camera=known)


@router.get("/keys", response_class=HTMLResponse)
async def keys_page(state: State, request: Request, user: User) -> HTMLResponse:
    pool = await read_key_pool(state.redis, state.settings.keys)
    return render(state, request, "keys.html", user, pool=pool)


def _matching(value: str | None, pattern: str) -> str | None:
    """A query value that fits its pattern, else None (a page ignores a bad filter)."""
    return value if value is not None and re.fullmatch(pattern, value) else None


@router.get("/incidents", response_class=HTMLResponse)
async def incidents_page(
    state: State,
    request: Request,
    user: User,
    site: str | None = None,
    camera: str | None = None,
    incident_state: Annotated[str | None, Query(alias="state")] = None,
    offset: int = 0,
) -> HTMLResponse:
    chosen = incident_state if incident_state in set(IncidentState) else None
    filters = IncidentFilters(
        site=_matching(site, CAMERA_ID_PATTERN),
        camera=_matching(camera, CAMERA_ID_PATTERN),
        state=IncidentState(chosen) if chosen else None,
        offset=max(0, min(offset, 1_000_000)),
        limit=INCIDENT_PAGE_SIZE,
    )
    page = await incident_page(state.redis, filters)
    sites = [s.id for s in state.settings.sites]
    return render(
        state,
        request,
        "incidents.html",
        user,
        page=page,
        filters=filters,
        sites=sites,
        cameras=state.live.cameras,
        states=list(IncidentState),
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident_page_of(
    state: State, request: Request, user: User, incident_id: str, action: str | None = None
) -> HTMLResponse:
    """One incident. `?action=ack|dismiss` (the notifications' links) only highlights that
    button: a GET never acts."""
    try:
        detail = await incident_detail(state.redis, incident_id[:200])
    except IncidentNotFound as exc:
        return render(state, request, "incident_missing.html", user, 404, message=str(exc))
    highlight = {"ack": "acknowledge", "dismiss": "false_alarm"}.get(action or "", "")
    return render(
        state,
        request,
        "incident.html",
        user,
        detail=detail,
        incident=detail.incident,
        actions=list(IncidentAction),
        highlight=highlight,
    )


def login_redirect(next_path: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(_safe_next(next_path))}", status_code=303)
