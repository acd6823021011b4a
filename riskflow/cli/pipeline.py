"""`riskflow pipeline test --mode e2e|producer|consumer` (the original guide's test script);
the work is `riskflow.devstack.pipeline_check`."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer

from riskflow.cli.common import console, settings_of
from riskflow.devstack.pipeline_check import consume, missing, produce
from riskflow.names import RESULTS_TOPIC

app = typer.Typer(help="Exercise the running pipeline.")


class Mode(StrEnum):
    e2e = "e2e"
    producer = "producer"
    consumer = "consumer"


@app.command("test")
def test(
    ctx: typer.Context,
    mode: Annotated[Mode, typer.Option(help="e2e, producer or consumer")] = Mode.e2e,
    duration: Annotated[float, typer.Option(help="seconds to wait for results")] = 60.0,
    num_messages: Annotated[int, typer.Option(help="frames per camera")] = 10,
    topic: Annotated[str, typer.Option(help="topic for --mode consumer")] = RESULTS_TOPIC,
    cameras: Annotated[int, typer.Option(help="simulated cameras")] = 1,
) -> None:
    """Send scripted detections and/or watch results (needs the worker and bridge for e2e)."""
    settings = settings_of(ctx)
    camera_ids = [str(i + 1) for i in range(cameras)]
    if mode == Mode.consumer:
        seen = asyncio.run(consume(settings, topic, duration))
        console.print(f"{len(seen)} message(s) on {topic}")
        return
    expected = asyncio.run(produce(settings, camera_ids, num_messages))
    console.print(
        f"produced {num_messages * cameras} detection message(s); "
        f"{len(expected)} significant situation(s)"
    )
    if mode == Mode.producer:
        return
    seen = asyncio.run(consume(settings, RESULTS_TOPIC, duration, wanted=expected))
    absent = missing(expected, set(seen))
    console.print(f"results: {len(expected) - len(absent)}/{len(expected)} assessments arrived")
    if absent:
        console.print(f"[red]missing: {sorted(absent)}[/red]")
        raise typer.Exit(1)
