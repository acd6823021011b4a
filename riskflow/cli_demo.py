"""`riskflow demo`: the local stack, a worker, a bridge and simulated cameras, watched live."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.console import Console
from rich.live import Live
from rich.table import Table

from riskflow.endpoints import Endpoints
from riskflow.kafka import ensure_topics, make_consumer, make_producer
from riskflow.localstack.process import ManagedProcess
from riskflow.localstack.stack import LocalStack
from riskflow.names import DETECTION_TOPIC, RESULTS_TOPIC, camera_alerts_key, camera_latest_key
from riskflow.settings import Settings
from riskflow.simulate import scene_event
from workers.bridge import run_bridge
from workers.significance import assess_significance
from workers.worker import run_worker

console = Console(soft_wrap=True)


@dataclass
class Progress:
    cameras: list[str]
    published: Counter[str] = field(default_factory=Counter)
    expected: dict[str, set[str]] = field(default_factory=dict)
    results: dict[str, set[str]] = field(default_factory=dict)
    latest: dict[str, dict[str, object]] = field(default_factory=dict)
    alerts: Counter[str] = field(default_factory=Counter)
    producing: bool = True

    def done(self) -> bool:
        return not self.producing and all(
            self.expected.get(c, set()) <= self.results.get(c, set()) for c in self.cameras
        )

    def table(self) -> Table:
        table = Table(title="riskflow demo")
        for column in ("camera", "frames", "situations", "assessed", "alerts", "latest risk"):
            table.add_column(column)
        for camera in self.cameras:
            latest = self.latest.get(camera, {})
            risk = f"{latest.get('risk_level')} ({latest.get('risk_score')})" if latest else "-"
            table.add_row(
                camera,
                str(self.published[camera]),
                str(len(self.expected.get(camera, ()))),
                str(len(self.results.get(camera, ()))),
                str(self.alerts[camera]),
                risk,
            )
        return table


async def _simulate(settings: Settings, progress: Progress, frames: int, fps: float) -> None:
    """The cameras: a scripted scene (people walk, one falls) published like the edge does."""
    producer = make_producer(Endpoints.of(settings).kafka, settings.kafka)
    await producer.start()
    try:
        start = datetime.now(UTC)
        for frame in range(frames):
            for n, camera in enumerate(progress.cameras):
                falls = 1 if frame >= frames * 2 // 3 else 0
                at = start + timedelta(seconds=frame / fps)
                event = scene_event(camera, frame, at, people=1 + (frame + n) % 2, falls=falls)
                situation = assess_significance(event, settings.significance)
                if situation is not None:
                    progress.expected.setdefault(camera, set()).add(situation.workflow_id)
                await producer.send(
                    DETECTION_TOPIC, event.model_dump_json().encode(), key=camera.encode()
                )
                progress.published[camera] += 1
            await asyncio.sleep(1 / fps)
        await producer.flush()
    finally:
        await producer.stop()
        progress.producing = False


async def _watch(settings: Settings, progress: Progress) -> None:
    endpoints = Endpoints.of(settings)
    consumer = make_consumer(endpoints.kafka, settings.kafka, RESULTS_TOPIC, group_id=None)
    consumer._auto_offset_reset = "latest"  # only this run's results
    redis = Redis.from_url(endpoints.redis)
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=300)
            for record in (r for rs in batch.values() for r in rs):
                data = json.loads(record.value)
                progress.results.setdefault(data["camera_id"], set()).add(data["assessment_id"])
            for camera in progress.cameras:
                raw = await redis.get(camera_latest_key(camera))
                if raw:
                    progress.latest[camera] = json.loads(raw)
                progress.alerts[camera] = await redis.llen(camera_alerts_key(camera))
    finally:
        await consumer.stop()
        await redis.aclose()


def _where_to_look(settings: Settings, progress: Progress) -> None:
    endpoints = Endpoints.of(settings)
    camera = progress.cameras[0]
    some = sorted(progress.results.get(camera, {"<workflow id>"}))[0]
    redis_port = settings.local.redis_port
    console.print("\n[bold]Where to look[/bold]")
    if endpoints.temporal_ui:
        console.print(f"  Temporal Web UI:  {endpoints.temporal_ui}")
    console.print(
        f"  Workflow status:  temporal workflow query --address {endpoints.temporal} "
        f"--workflow-id {some} --type status"
    )
    console.print(f"  Latest result:    redis-cli -p {redis_port} GET {camera_latest_key(camera)}")
    console.print(
        f"  Alerts:           redis-cli -p {redis_port} LRANGE {camera_alerts_key(camera)} 0 -1"
    )
    console.print("  Key pool:         riskflow keys status")


async def _demo(
    settings: Settings, cameras: int, frames: int, fps: float, duration: float, once: bool
) -> bool:
    stack = LocalStack(settings)
    already = {
        s.name for s in stack.services if ManagedProcess(s.spec_factory(), stack.state_dir).pid()
    }
    mode = (
        "real DashScope" if settings.dashscope_base_url else "the local DashScope-compatible server"
    )
    console.print(f"LLM: {mode} at {stack.endpoints.dashscope}")
    stop = asyncio.Event()
    tasks: list[asyncio.Task[object]] = []
    try:
        with console.status("starting the local stack..."):
            await stack.up()
            await ensure_topics(stack.endpoints.kafka, settings.kafka)
        progress = Progress([f"cam{i + 1}" for i in range(cameras)])
        tasks += [
            asyncio.create_task(run_worker(settings, stop)),
            asyncio.create_task(run_bridge(settings, stop)),
            asyncio.create_task(_watch(settings, progress)),
        ]
        await asyncio.sleep(1)  # let the bridge join its group
        tasks.append(asyncio.create_task(_simulate(settings, progress, frames, fps)))
        deadline = time.monotonic() + duration
        with Live(progress.table(), console=console, refresh_per_second=4) as live:
            while time.monotonic() < deadline and not progress.done():
                failed = [t for t in tasks if t.done() and t.exception()]
                if failed:
                    raise failed[0].exception()  # type: ignore[misc]
                live.update(progress.table())
                await asyncio.sleep(0.25)
            live.update(progress.table())
        _where_to_look(settings, progress)
        if not once:
            console.print("\nRunning; Ctrl-C stops everything the demo started.")
            await asyncio.Event().wait()
        return progress.done()
    finally:
        stop.set()
        for task in tasks:
            if task.get_coro().__name__ == "_watch":  # type: ignore[union-attr]
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        started = [s for s in stack.services if s.name not in already]
        for service in reversed(started):
            ManagedProcess(service.spec_factory(), stack.state_dir).stop()
        console.print(
            f"stopped: {', '.join(s.name for s in started) or 'nothing (it was already running)'}"
        )


def demo(
    ctx: typer.Context,
    cameras: Annotated[int, typer.Option(help="simulated cameras")] = 2,
    frames: Annotated[int, typer.Option(help="frames per camera")] = 24,
    fps: Annotated[float, typer.Option(help="frames per second per camera")] = 4.0,
    duration: Annotated[float, typer.Option(help="give up waiting for results after (s)")] = 180.0,
    once: Annotated[bool, typer.Option(help="stop everything when the results are in")] = False,
) -> None:
    """Bring up the local stack, run a worker and a bridge, feed simulated cameras, watch."""
    settings: Settings = ctx.obj
    try:
        ok = asyncio.run(_demo(settings, cameras, frames, fps, duration, once))
    except KeyboardInterrupt:
        return
    if not ok:
        console.print("[red]not every situation was assessed in time[/red]")
        raise typer.Exit(1)
