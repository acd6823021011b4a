"""`riskflow worker run`: the Temporal worker (`workers.worker.worker`)."""

from __future__ import annotations

import asyncio

import typer

from cli.common import settings_of, traced

app = typer.Typer(help="The Temporal worker.")


@app.command("run")
def worker_run(ctx: typer.Context) -> None:
    """Run the Temporal worker (workflows and activities) until SIGINT/SIGTERM."""
    from workers.worker.worker import run_worker

    settings = settings_of(ctx)
    with traced(settings, "worker"):
        asyncio.run(run_worker(settings))
