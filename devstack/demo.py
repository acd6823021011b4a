"""The demo: the local stack, a worker, a bridge and cameras, watched live (`riskflow demo`).

It runs the product's default path (`bridge.mode: incidents`): each camera's fall becomes one
incident, notified to the local receiver (which checks each vendor's format and signature) and
shown in the console; the table counts incidents, assessments and notifications per camera.
Level 0 also goes to a WeCom app card (`devstack.demo_card`), and the first camera's incident
is then acknowledged from it, by a click in the simulator.

Cameras: the real edge (YOLO) on a sample video it writes from ultralytics' bundled image, or
`--source` (an RTSP URL or a file). Without the detect extra installed, simulated cameras
publish scripted detections instead, and the demo says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import secrets
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY
from rich.console import Console
from rich.live import Live
from rich.table import Table

from devstack.demo_card import DemoCard, demo_card
from devstack.localstack.stack import LocalStack
from devstack.receivers import client as receiver_client
from devstack.simulate import scene_event
from riskflow.config.edge import CameraConfig
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import IncidentView
from riskflow.errors import ConfigError, RiskflowError
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import ensure_topics, make_consumer, make_producer
from riskflow.infra.metrics import BRIDGE_MESSAGES
from riskflow.infra.redis import RedisClient, redis_client
from riskflow.names import (
    DETECTION_TOPIC,
    INCIDENT_INDEX,
    RESULTS_TOPIC,
    camera_alerts_key,
    camera_latest_key,
    incident_key,
)
from riskflow.redact import redact_url
from workers.bridge.bridge import run_bridge
from workers.worker.worker import run_worker

console = Console(soft_wrap=True)


def _metric(name: str, **labels: str) -> int:
    return int(REGISTRY.get_sample_value(name, labels) or 0)


@dataclass
class Progress:
    cameras: list[str]
    started_at: float = field(default_factory=time.time)  # epoch seconds
    simulated: Counter[str] = field(default_factory=Counter)
    results: dict[str, set[str]] = field(default_factory=dict)
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: Counter[str] = field(default_factory=Counter)
    incidents: dict[str, list[IncidentView]] = field(default_factory=dict)
    notifications: int = 0  # received by the local receiver since the demo started
    producing: bool = True

    def frames(self, camera: str) -> int:
        published = _metric("riskflow_edge_frames_total", camera=camera, stage="published")
        return published + self.simulated[camera]

    def bridged(self, camera: str) -> Counter[str]:
        """The bridge's outcomes for this camera's frames (every outcome it counts: signalled,
        coalesced, insignificant, stale, dead-lettered, ...)."""
        found: Counter[str] = Counter()
        for metric in BRIDGE_MESSAGES.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels.get("camera") == camera:
                    found[sample.labels["outcome"]] += int(sample.value)
        return found

    def notified(self, camera: str) -> int:
        """Incident steps notified (the incidents' own record)."""
        return sum(len(v.steps_sent) for v in self.incidents.get(camera, []))

    def done(self) -> bool:
        """Every frame bridged; every camera has an incident whose assessments all reached
        the results topic and which is notified (or closed: dismissed by the LLM); every
        notified step arrived at the local receiver."""
        if self.producing:
            return False
        for camera in self.cameras:
            incidents = self.incidents.get(camera, [])
            if sum(self.bridged(camera).values()) < self.frames(camera) or not incidents:
                return False
            if len(self.results.get(camera, ())) < sum(v.assessments for v in incidents):
                return False
            if any(not v.steps_sent and not v.state.closed for v in incidents):
                return False
        return self.notifications >= sum(self.notified(c) for c in self.cameras)

    def table(self) -> Table:
        table = Table(
            title="riskflow demo",
            caption=f"notifications received by the local receiver: {self.notifications}",
        )
        columns = ("camera", "frames", "signalled", "incidents", "assessed", "notified")
        for column in (*columns, "alerts", "latest risk"):
            table.add_column(column)
        for camera in self.cameras:
            latest = self.latest.get(camera)
            risk = f"{latest['risk_level']} ({latest['risk_score']})" if latest else "-"
            incidents = self.incidents.get(camera, [])
            states = Counter(v.state.value for v in incidents)
            shown = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "-"
            table.add_row(
                camera,
                str(self.frames(camera)),
                str(self.bridged(camera)["signalled"]),
                shown,
                str(len(self.results.get(camera, ()))),
                str(self.notified(camera)),
                str(self.alerts[camera]),
                risk,
            )
        return table


async def _simulate(settings: Settings, progress: Progress, frames: int, fps: float) -> None:
    """Simulated cameras: the scripted scene (people walk, one falls) as detections."""
    producer = make_producer(Endpoints.of(settings).kafka, settings.kafka)
    await producer.start()
    try:
        start = datetime.now(UTC)
        for frame in range(frames):
            for n, camera in enumerate(progress.cameras):
                falls = 1 if frame >= frames * 2 // 3 else 0
                at = start + timedelta(seconds=frame / fps)
                event = scene_event(camera, frame, at, people=1 + (frame + n) % 2, falls=falls)
                value = event.model_dump_json().encode()
                await producer.send(DETECTION_TOPIC, value, key=camera.encode())
                progress.simulated[camera] += 1
            await asyncio.sleep(1 / fps)
        await producer.flush()
    finally:
        await producer.stop()
        progress.producing = False


async def _edge(settings: Settings, progress: Progress, cameras: list[CameraConfig]) -> None:
    from detection_edge.run import run_edge

    try:
        await run_edge(settings, cameras, asyncio.Event())
    finally:
        progress.producing = False


async def _watch(settings: Settings, progress: Progress) -> None:
    endpoints = Endpoints.of(settings)
    consumer = make_consumer(endpoints.kafka, settings.kafka, RESULTS_TOPIC, group_id=None)
    redis = redis_client(endpoints.redis)
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=300)
            for record in (r for rs in batch.values() for r in rs):
                data = json.loads(record.value)
                if data["camera_id"] in progress.cameras:
                    progress.results.setdefault(data["camera_id"], set()).add(data["assessment_id"])
            for camera in progress.cameras:
                raw = await redis.get(camera_latest_key(camera))
                if raw:
                    progress.latest[camera] = json.loads(raw)
                progress.alerts[camera] = await redis.llen(camera_alerts_key(camera))
            progress.incidents = await _incidents(redis, progress)
            arrived = await receiver_client.notifications(endpoints.receiver)
            progress.notifications = sum(
                1 for n in arrived if float(n.get("received_at", 0)) >= progress.started_at
            )
    finally:
        await consumer.stop()
        await redis.aclose()


async def _incidents(redis: RedisClient, progress: Progress) -> dict[str, list[IncidentView]]:
    """The demo's cameras' incidents opened since the demo started (`INCIDENT_INDEX`)."""
    since_ms = int(progress.started_at * 1000) - 60_000  # the index scores by opened (ms)
    ids = [
        i.decode() if isinstance(i, bytes) else str(i)
        for i in await redis.zrangebyscore(INCIDENT_INDEX, since_ms, "+inf")
    ]
    found: dict[str, list[IncidentView]] = {}
    if ids:
        for raw in await redis.mget([incident_key(i) for i in ids]):
            view = IncidentView.model_validate_json(raw) if raw else None
            if view is not None and view.camera_id in progress.cameras:
                found.setdefault(view.camera_id, []).append(view)
    return found


def _where_to_look(settings: Settings, progress: Progress) -> None:
    endpoints = Endpoints.of(settings)
    camera = progress.cameras[0]
    incidents = progress.incidents.get(camera, [])
    workflow = incidents[0].workflow_id if incidents else "<incident workflow id>"
    redis = f"redis-cli -p {settings.local.redis_port}"
    console.print("\n[bold]Where to look[/bold]")
    if endpoints.temporal_ui:
        console.print(f"  Temporal Web UI:  {endpoints.temporal_ui}")
    console.print("  Incidents:        riskflow incidents list   (then: show, ack, resolve)")
    console.print(
        f"  Incident state:   temporal workflow query --address {endpoints.temporal} "
        f"--workflow-id {workflow} --type incident"
    )
    console.print(f"  Latest result:    {redis} GET {camera_latest_key(camera)}")
    console.print(f"  Alerts:           {redis} LRANGE {camera_alerts_key(camera)} 0 -1")
    console.print("  Key pool:         riskflow keys status")
    console.print(f"  Notifications:    curl {endpoints.receiver}/admin/notifications")
    _console_line(settings)


async def _print_notifications(settings: Settings, progress: Progress) -> None:
    """The notifications the local receiver got since the demo started (format and signature
    checked there)."""
    arrived = [
        n
        for n in await receiver_client.notifications(Endpoints.of(settings).receiver)
        if float(n.get("received_at", 0)) >= progress.started_at
    ]
    console.print(f"\n[bold]Notifications received[/bold] ({len(arrived)})")
    for notification in arrived[-20:]:
        console.print("  " + receiver_client.describe(notification))


async def _click(card: DemoCard, progress: Progress) -> bool:
    """Answer the first camera's incident from its WeCom card, as 王工 would on his phone."""
    incidents = progress.incidents.get(progress.cameras[0], [])
    if not incidents:
        return False
    incident = incidents[0].incident_id
    console.print("\n[bold]Answered from the chat app[/bold]")
    console.print(f"  王工 picks On my way, 10 minutes, on the WeCom card of {incident}")
    answered = await card.click(incident)
    if answered is None:
        console.print("  [red]the click did not acknowledge the incident within 60 s[/red]")
        return False
    who, line = answered
    console.print(f"  incident acknowledged by {who}; everyone's card now says: {line}")
    console.print(f"  Cards:            curl {card.simulator}/admin/wecom-app/cards")
    return True


def _console_line(settings: Settings) -> None:
    url = f"http://{settings.console.host}:{settings.console.port}/"
    # The demo user of the shipped config/console.yaml (a demo password, never for real use).
    demo_user = any(u.username == "demo" for u in settings.console.users)
    login = "  (log in as demo / demo-password-change-me)" if demo_user else ""
    console.print(f"  Console:          {url}{login}")


async def _serve_console(settings: Settings, stop: asyncio.Event) -> None:
    """The operator console for the demo; the demo goes on without it if its port is taken."""
    from console.app import serve

    quick = settings.console.model_copy(update={"discover_seconds": 2.0})
    try:
        await serve(settings.model_copy(update={"console": quick}), secrets.token_urlsafe(32), stop)
    except (OSError, SystemExit):
        port = settings.console.port
        console.print(f"[yellow]console not started: port {port} is taken[/yellow]")


def _cameras(settings: Settings, count: int, source: str | None) -> list[CameraConfig] | None:
    """The edge's cameras, or None when the detect extra is missing (simulated cameras)."""
    if importlib.util.find_spec("ultralytics") is None:
        if source is not None:
            raise ConfigError("--source needs the detect extra: pip install -e '.[detect]'")
        return None
    if source is not None:
        return [CameraConfig(id="cam1", source=source)]
    from detection_edge.sample_video import write_scene

    video = write_scene(settings.local.state_dir / "demo" / "scene.mp4")
    return [CameraConfig(id=f"cam{i + 1}", source=str(video)) for i in range(count)]


async def _wait(progress: Progress, tasks: list[asyncio.Task[Any]], within: float) -> None:
    deadline = time.monotonic() + within
    with Live(progress.table(), console=console, refresh_per_second=4) as live:
        while time.monotonic() < deadline and not progress.done():
            for task in tasks:
                failure = task.exception() if task.done() else None
                if isinstance(failure, RiskflowError):
                    raise failure  # e.g. a port taken: the CLI prints it as one line
                if failure is not None:
                    raise RuntimeError(f"a demo task failed: {failure!r}")
            live.update(progress.table())
            await asyncio.sleep(0.25)
        live.update(progress.table())


@dataclass(frozen=True)
class DemoOptions:
    """What `riskflow demo` was asked for (`fps` in frames per second, `duration` in s)."""

    cameras: int
    frames: int
    fps: float
    duration: float
    once: bool
    source: str | None


async def run_demo(settings: Settings, options: DemoOptions) -> bool:
    """Run the demo on the incident path; True when every camera's incident was assessed and
    notified (and the notifications received) within `options.duration` s."""
    bridge = settings.bridge.model_copy(update={"mode": "incidents"})
    settings = settings.model_copy(update={"bridge": bridge})
    stack = LocalStack(settings)
    running = stack.running()
    llm = (
        "real DashScope" if settings.dashscope_base_url else "the local DashScope-compatible server"
    )
    console.print(f"LLM: {llm} at {stack.endpoints.dashscope}")
    cameras = _cameras(settings, options.cameras, options.source)
    if cameras is None:
        console.print("Cameras: simulated detections (install the detect extra for the real edge)")
    else:
        console.print(f"Cameras: the YOLO edge on {redact_url(cameras[0].source)}")
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    card_stack = contextlib.AsyncExitStack()
    try:
        with console.status("starting the local stack..."):
            await stack.up()
            await ensure_topics(stack.endpoints.kafka, settings.kafka)
        card = await card_stack.enter_async_context(demo_card(settings, settings.local.state_dir))
        settings = card.settings  # level 0 also tells the demo's WeCom app card
        ids = (
            [c.id for c in cameras] if cameras else [f"cam{i + 1}" for i in range(options.cameras)]
        )
        progress = Progress(ids)
        watcher = asyncio.create_task(_watch(settings, progress))
        tasks += [
            asyncio.create_task(run_worker(settings, stop)),
            asyncio.create_task(run_bridge(settings, stop)),
            asyncio.create_task(_serve_console(settings, stop)),
        ]
        await asyncio.sleep(1)  # the bridge joins its group
        _console_line(settings)
        source: Coroutine[Any, Any, None] = (
            _edge(settings, progress, cameras)
            if cameras
            else _simulate(settings, progress, options.frames, options.fps)
        )
        tasks.append(asyncio.create_task(source))
        try:
            await _wait(progress, tasks, options.duration)
        finally:
            watcher.cancel()
        await _print_notifications(settings, progress)
        clicked = await _click(card, progress)
        _where_to_look(settings, progress)
        if not options.once:
            console.print("\nRunning; Ctrl-C stops everything the demo started.")
            await asyncio.Event().wait()
        return progress.done() and clicked
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        with contextlib.suppress(Exception):
            await card_stack.aclose()
        stopped = stack.stop_only({s.name for s in stack.services} - running)
        names = ", ".join(stopped) or "nothing (it was already running)"
        console.print(f"stopped: {names}")
