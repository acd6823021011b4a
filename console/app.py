"""The console's ASGI app (FastAPI): pages, the JSON API, sessions, security headers.

`create_app(settings, session_secret)` builds it; its lifespan opens Redis and starts the live
poller. `serve(settings, session_secret)` runs it under uvicorn until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from redis.exceptions import RedisError
from starlette.middleware.sessions import SessionMiddleware

from console import api, pages
from console.auth import Authenticator, require_login
from console.live import LiveTiles
from console.state import ConsoleState
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import redis_client
from riskflow.infra.shutdown import stop_on_signals

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "riskflow_session"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def configured_cameras(settings: Settings) -> list[str]:
    """Cameras named by cameras.yaml and sites.yaml, in that order, once each."""
    ids = [c.id for c in settings.cameras] + [c for s in settings.sites for c in s.cameras]
    return list(dict.fromkeys(ids))


def create_app(settings: Settings, session_secret: str) -> FastAPI:
    """The console for `settings`; sessions signed with `session_secret`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = redis_client(Endpoints.of(settings).redis, timeout_seconds=5)
        live = LiveTiles(redis, configured_cameras(settings), settings.console)
        templates = Jinja2Templates(directory=HERE / "templates")
        app.state.console = ConsoleState(settings, redis, live, templates)
        await live.start()
        try:
            yield
        finally:
            await live.stop()
            await redis.aclose()

    app = FastAPI(
        title="riskflow console API",
        version="1",
        description="Cameras, latest assessments, alerts and the key pool. Log in with a "
        "session cookie (POST /login) or send `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        docs_url=None,  # the Swagger page loads from a CDN: the console works offline
        redoc_url=None,
        openapi_url=None,  # served below, behind the login
    )
    app.state.auth = Authenticator(settings.console)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret,
        session_cookie=SESSION_COOKIE,
        max_age=settings.console.session_max_age_seconds,
        same_site="strict",
        https_only=settings.console.secure_cookies,
    )
    app.middleware("http")(_security_headers)
    app.include_router(api.health_router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(pages.LoginRequired, _to_login)
    app.add_exception_handler(RedisError, _redis_down)
    app.add_exception_handler(RequestValidationError, _invalid_request)

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=[Depends(require_login)])
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    return app


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def _to_login(request: Request, exc: Exception) -> Response:
    next_path = exc.next_path if isinstance(exc, pages.LoginRequired) else "/"
    return pages.login_redirect(next_path)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 with each error's `loc`, `msg` and `type`, never the submitted value
    (`input`): a rejected password or token is not echoed back."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
    return JSONResponse({"detail": jsonable_encoder(detail)}, 422)


async def _redis_down(request: Request, exc: Exception) -> Response:
    logger.warning("Redis error serving %s: %s", request.url.path, exc)
    return JSONResponse({"detail": f"Redis is unavailable: {type(exc).__name__}"}, 503)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the caller's `stop` event decides (uvicorn's
    would re-raise the signal after shutdown and end the process with it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings, session_secret: str, stop: asyncio.Event | None = None) -> None:
    """Run the console on `console.host:console.port` until `stop` is set (default: until
    SIGINT/SIGTERM, `riskflow.infra.shutdown`). A port already taken ends it with SystemExit
    (uvicorn's)."""
    config = uvicorn.Config(
        create_app(settings, session_secret),
        host=settings.console.host,
        port=settings.console.port,
        log_config=None,
        access_log=False,
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    stopping = asyncio.create_task((stop or stop_on_signals()).wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await serving
