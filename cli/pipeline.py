"""`riskflow pipeline test --mode e2e|producer|consumer` (the original guide's test script);
the work is `devstack.pipeline_check`."""

from __future__ import annotations

import asyncio
import uuid
from enum import StrEnum
from typing import Annotated

import typer

from cli.common import console, settings_of
from devstack.pipeline_check import consume, e2e, missing, produce
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
    if mode == Mode.producer:
        expected = asyncio.run(produce(settings, camera_ids, num_messages))
        console.print(
            f"produced {num_messages * cameras} detection message(s); "
            f"{len(expected)} significant situation(s)"
        )
        return
    # Cameras of this run's own: an incident an earlier run left open would absorb the frames
    # of cameras "1".."N" without a new assessment, and only this run's results count.
    run = uuid.uuid4().hex[:6]
    camera_ids = [f"e2e-{run}-{i + 1}" for i in range(cameras)]
    console.print(f"producing {num_messages * cameras} detection message(s) for {camera_ids}")
    expected, seen = asyncio.run(e2e(settings, camera_ids, num_messages, duration))
    console.print(f"{len(expected)} significant situation(s)")
    absent = missing(expected, set(seen))
    console.print(f"results: {len(expected) - len(absent)}/{len(expected)} assessments arrived")
    if absent:
        console.print(f"[red]missing: {sorted(absent)}[/red]")
        raise typer.Exit(1)
