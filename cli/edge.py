"""`riskflow edge run`: cameras -> YOLO -> Kafka (`detection_edge`, needs the detect extra)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cli.common import console, settings_of, traced
from riskflow.config.edge import CameraConfig

app = typer.Typer(help="The detection edge (needs the detect extra).")


@app.command("run")
def edge_run(
    ctx: typer.Context,
    camera: Annotated[list[str] | None, typer.Option(help="only these camera ids")] = None,
    source: Annotated[str | None, typer.Option(help="a source instead of cameras.yaml")] = None,
    camera_id: Annotated[str, typer.Option(help="camera id for --source")] = "1",
) -> None:
    """Read cameras, detect with YOLO, publish detections to Kafka (until files end or Ctrl-C)."""
    from detection_edge.run import run_edge

    settings = settings_of(ctx)
    cameras = list(settings.cameras)
    if source is not None:
        cameras = [CameraConfig(id=camera_id, source=source)]
    elif camera:
        cameras = [c for c in cameras if c.id in camera]
    with traced(settings, "edge"):
        totals = asyncio.run(run_edge(settings, cameras))
    console.print(f"edge: {dict(totals)}")
