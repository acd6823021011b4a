"""`riskflow demo`: options in, the demo (`devstack.demo`) runs."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from cli.common import settings_of
from devstack.demo import DemoOptions, console, run_demo
from riskflow.infra.shutdown import cancel_on_signals


def demo(
    ctx: typer.Context,
    cameras: Annotated[int, typer.Option(help="cameras (each plays the sample scene)")] = 2,
    source: Annotated[str | None, typer.Option(help="an RTSP URL or video file instead")] = None,
    frames: Annotated[int, typer.Option(help="frames per simulated camera")] = 24,
    fps: Annotated[float, typer.Option(help="frames/s per simulated camera")] = 4.0,
    duration: Annotated[float, typer.Option(help="stop waiting for results after (s)")] = 240.0,
    once: Annotated[bool, typer.Option(help="stop everything once the results are in")] = False,
) -> None:
    """Bring up the local stack, run a worker, a bridge and the cameras, and watch."""
    settings = settings_of(ctx)
    options = DemoOptions(cameras, frames, fps, duration, once, source)
    root = logging.getLogger()
    if root.level == logging.INFO:  # the default: keep the live table readable
        root.setLevel(logging.WARNING)
    try:  # SIGTERM and SIGHUP stop it as Ctrl-C does: what it started is stopped
        ok = asyncio.run(cancel_on_signals(run_demo(settings, options)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return
    if not ok:
        console.print("[red]not every situation was assessed in time[/red]")
        raise typer.Exit(1)
