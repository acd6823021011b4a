"""`riskflow topics init`: create the Kafka topics."""

from __future__ import annotations

import asyncio

import typer

from cli.common import console, settings_of
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import ensure_topics

app = typer.Typer(help="Kafka topics.")


@app.command("init")
def topics_init(ctx: typer.Context) -> None:
    """Create detection-results, risk-assessment-results and the dead-letter topic (idempotent)."""
    settings = settings_of(ctx)
    result = asyncio.run(ensure_topics(Endpoints.of(settings).kafka, settings.kafka))
    for topic, state in result.items():
        console.print(f"{topic}: {state}")
