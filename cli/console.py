"""`riskflow console run / hash-password`: the operator console (`console.app`)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from typing import Annotated

import typer

from cli.common import console, settings_of, traced
from riskflow.config.settings import Settings

app = typer.Typer(help="The operator console: live camera risk, alerts, the key pool.")
logger = logging.getLogger(__name__)


def session_secret(settings: Settings) -> str:
    """The cookie-signing secret from `console.session_secret_env`, else a random one (then
    sessions end when the console restarts, and replicas do not share them)."""
    secret = os.environ.get(settings.console.session_secret_env, "")
    if len(secret) >= 32:
        return secret
    if secret:
        raise typer.BadParameter(
            f"${settings.console.session_secret_env} must be at least 32 characters"
        )
    logger.warning(
        "$%s is not set: sessions are signed with a random secret and end on restart",
        settings.console.session_secret_env,
    )
    return secrets.token_urlsafe(32)


@app.command("run")
def console_run(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="instead of console.port")] = None,
) -> None:
    """Serve the console on console.host:console.port until SIGINT/SIGTERM (and its
    /metrics on metrics.console_port when that is set and metrics are on)."""
    from console.app import serve
    from riskflow.infra import metrics

    settings = settings_of(ctx)
    if port is not None:
        settings = settings.model_copy(
            update={"console": settings.console.model_copy(update={"port": port})}
        )
    if settings.metrics.enabled and settings.metrics.console_port:
        metrics.serve(settings.metrics.host, settings.metrics.console_port)
    console.print(f"console: http://{settings.console.host}:{settings.console.port}/")
    with traced(settings, "console"):
        asyncio.run(serve(settings, session_secret(settings)))


@app.command("hash-password")
def hash_password(
    token: Annotated[bool, typer.Option(help="hash a bearer token (SHA-256) instead")] = False,
) -> None:
    """Read a password (or token) without echo; print the hash for config/console.yaml."""
    from console.auth import hash_password as argon2_hash
    from console.auth import hash_token

    secret = typer.prompt("token" if token else "password", hide_input=True, err=True)
    if not secret:
        raise typer.BadParameter("empty")
    print(hash_token(secret) if token else argon2_hash(secret))
