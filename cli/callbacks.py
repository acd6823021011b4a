"""`riskflow callbacks run`: the listener for clicks on incident cards
(`workers.callbacks`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cli.common import console, settings_of, traced

app = typer.Typer(help="Chat-app callbacks: clicks on incident cards act on the incident.")


@app.command("run")
def callbacks_run(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="instead of callbacks.port")] = None,
) -> None:
    """Serve the app channels' receive URLs (/callbacks/<vendor>/<channel>) on
    callbacks.host:callbacks.port until SIGINT/SIGTERM."""
    from workers.callbacks.listener import run_callbacks
    from workers.common.client import connect_process

    settings = settings_of(ctx)
    if port is not None:
        settings = settings.model_copy(
            update={"callbacks": settings.callbacks.model_copy(update={"port": port})}
        )
    cfg = settings.callbacks
    console.print(f"callbacks: http://{cfg.host}:{cfg.port}/callbacks/<vendor>/<channel>")

    async def main() -> None:
        metrics = settings.metrics
        client = await connect_process(settings, metrics.callbacks_port, metrics.callbacks_sdk_port)
        await run_callbacks(settings, client)

    with traced(settings, "callbacks"):
        asyncio.run(main())
