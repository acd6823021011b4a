"""`riskflow bridge run`: the Kafka -> Temporal bridge (`workers.bridge.bridge`)."""

from __future__ import annotations

import asyncio

import typer

from cli.common import settings_of, traced

app = typer.Typer(help="The Kafka -> Temporal bridge.")


@app.command("run")
def bridge_run(ctx: typer.Context) -> None:
    """Consume detection-results and start one workflow per significant event."""
    from workers.bridge.bridge import run_bridge

    settings = settings_of(ctx)
    with traced(settings, "bridge"):
        asyncio.run(run_bridge(settings))
