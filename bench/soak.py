"""Soak: simulated cameras for minutes through real worker and bridge processes; consumer lag,
latency and each process's RSS sampled over time, plotted to a PNG.

    python -m bench.soak [--mode incidents|assessments] [--cameras 50] [--fps 2] [--minutes 10]

The scene changes for every camera at once every 30 s (at 2 fps: every 60 frames): a fifth of
the cameras start falling and the fallen ones stand up.

`--mode incidents` (the default path, `bridge.mode: incidents`): the latency is capture ->
first notification of each incident: from the capture time of the first fall frame of the
camera's current fall scene to the moment the local receiver got the incident's first message.
Level 0 of the ladder is the signed JSON webhook channel `ticketing` (a channel with no
per-minute quota, so the figure is riskflow's, not a robot's 20 messages a minute), and
incidents resolve `--resolve-after` s (60) after their last significant frame, so each camera
opens a new incident at each of its fall scenes. The incidents' histories then say where that
time went (`latency_breakdown`: to the run's start, to its first workflow task, that task, to
the receiver; `breakdown`). `--mode assessments`: capture -> the assessment on the results
topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench._stack import bench_settings, report, services
from devstack.localstack.process import free_port
from devstack.receivers.client import notifications
from devstack.simulate import scene_event
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import incident_workflow_id
from riskflow.infra.kafka import ensure_topics, make_consumer, make_producer
from riskflow.names import DETECTION_TOPIC, RESULTS_TOPIC
from workers.common.client import connect

CONFIG = Path(__file__).resolve().parent.parent / "config"
CHANNEL = "ticketing"  # the webhook channel of config/riskflow.yaml
RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def lag(port: int) -> float:
    try:
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            text = await response.text()
    except aiohttp.ClientError:
        return float("nan")
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "riskflow_bridge_consumer_lag"
    )


async def cameras(
    settings: Settings,
    count: int,
    fps: float,
    until: float,
    sent: list[int],
    falls_from: dict[str, list[float]],
) -> None:
    """`count` cameras at `fps` until `until` (monotonic s); `falls_from[camera]` gets the
    capture time (epoch s) of the first frame of each of its fall scenes."""
    producer = make_producer(settings.kafka_bootstrap or "", settings.kafka, linger_ms=20)
    await producer.start()
    try:
        frame = 0
        while time.monotonic() < until:
            tick = time.monotonic()
            for n in range(count):
                falls = 1 if (frame // 60 + n) % 5 == 0 else 0  # now and then somebody falls
                captured = datetime.now(UTC)
                if falls and (frame % 60 == 0 or frame == 0):
                    falls_from.setdefault(f"soak{n}", []).append(captured.timestamp())
                event = scene_event(f"soak{n}", frame, captured, 1 + (frame + n) % 3, falls)
                await producer.send(
                    DETECTION_TOPIC, event.model_dump_json().encode(), key=event.camera_id.encode()
                )
            sent[0] += count
            frame += 1
            await asyncio.sleep(max(0.0, 1 / fps - (time.monotonic() - tick)))
        await producer.flush()
    finally:
        await producer.stop()


async def results(
    settings: Settings, latencies: list[tuple[float, float]], stop: asyncio.Event
) -> None:
    consumer = make_consumer(
        settings.kafka_bootstrap or "", settings.kafka, RESULTS_TOPIC, group_id=None
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for record in (r for rs in batch.values() for r in rs):
                data = json.loads(record.value)
                latencies.append((now, now - data["captured_ms"] / 1000))
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Told:
    """An incident's first message: its camera, the capture of its fall scene's first frame
    and when the receiver got the message (epoch s)."""

    camera: str
    captured: float
    received: float


async def first_notifications(
    receiver: str,
    falls_from: dict[str, list[float]],
    latencies: list[tuple[float, float]],
    stop: asyncio.Event,
    told: list[Told] | None = None,
) -> None:
    """Poll the local receiver: each incident's first message, as (received at, seconds since
    the capture of the first frame of its camera's fall scene then), and in `told`."""
    seen: set[str] = set()
    while not stop.is_set():
        for record in await notifications(receiver, CHANNEL):
            payload = record.get("payload", {})
            incident, at = payload.get("incident_id"), record["received_at"]
            if not incident or incident in seen:
                continue
            seen.add(incident)
            camera = payload.get("camera_id", "")
            starts = [t for t in falls_from.get(camera, []) if t <= at]
            if starts:
                latencies.append((at, at - starts[-1]))
                if told is not None:
                    told.append(Told(camera, starts[-1], at))
        await asyncio.sleep(0.5)


PHASES = ("to_workflow_started", "to_first_task_started", "first_task", "to_received")


async def breakdown(client: Client, told: list[Told]) -> dict[str, dict[str, float]]:
    """Where each first message's time went, from its incident's history (server clock; one
    machine, so one clock): capture -> the run started (the producer, the broker, the bridge,
    its signal-with-start), -> its first workflow task started (matching, the worker's poll),
    -> that task completed (the worker: the gate, the sends scheduled), -> the receiver got
    the message (the send: an eager activity, its HTTP POST). Median, p95 and max of each."""
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    for one in told:
        workflow_id = incident_workflow_id(one.camera, "hazard")
        runs = [
            run
            async for run in client.list_workflows(f"WorkflowId = '{workflow_id}'")
            if run.start_time.timestamp() >= one.captured - 1
        ]
        if not runs:
            continue
        run = min(runs, key=lambda r: r.start_time)
        history = await client.get_workflow_handle(workflow_id, run_id=run.run_id).fetch_history()
        marks: dict[str, float] = {}
        for event in history.events:
            at = event.event_time.ToDatetime(tzinfo=UTC).timestamp()
            kind = EventType.Name(event.event_type)
            if kind == "EVENT_TYPE_WORKFLOW_TASK_STARTED":
                marks.setdefault("task_started", at)
            elif kind == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED":
                marks.setdefault("task_completed", at)
                break
        started = run.start_time.timestamp()
        if len(marks) < 2:
            continue
        phases["to_workflow_started"].append(started - one.captured)
        phases["to_first_task_started"].append(marks["task_started"] - started)
        phases["first_task"].append(marks["task_completed"] - marks["task_started"])
        phases["to_received"].append(one.received - marks["task_completed"])
    return {
        name: {
            "median": round(statistics.median(values), 3),
            "p95": round(statistics.quantiles(values, n=20)[18], 3),
            "max": round(max(values), 3),
            "incidents": len(values),
        }
        for name, values in phases.items()
        if len(values) > 1
    }


def incident_config(source: Path, target: Path, resolve_after: float) -> Path:
    """The repository's configuration with level 0 on the `ticketing` webhook only and
    incidents resolving `resolve_after` s after their last significant frame."""
    shutil.copytree(source, target)
    path = target / "riskflow.yaml"
    config = yaml.safe_load(path.read_text())
    incidents = config.setdefault("incidents", {})
    incidents["escalation"] = [{"after_seconds": 0, "channels": [CHANNEL]}]
    incidents["auto_resolve_after_seconds"] = resolve_after
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def plot(samples: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    axes[0].plot(t, [s["lag"] for s in samples])
    axes[0].set_ylabel("consumer lag (messages)")
    axes[1].plot(t, [s["latency_p95"] for s in samples], "o-", markersize=3, label="p95")
    axes[1].plot(t, [s["latency_p50"] for s in samples], "o-", markersize=3, label="p50")
    axes[1].set_ylabel("latency (s)")
    axes[1].legend()
    axes[2].plot(t, [s["rss_worker"] for s in samples], label="worker")
    axes[2].plot(t, [s["rss_bridge"] for s in samples], label="bridge")
    axes[2].set_ylabel("RSS (MB)")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    fig.suptitle("riskflow soak")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


async def main(args: argparse.Namespace) -> None:
    incidents = args.mode == "incidents"
    with tempfile.TemporaryDirectory() as tmp:
        config = CONFIG
        if incidents:
            config = incident_config(CONFIG, Path(tmp) / "config", args.resolve_after)
        base = bench_settings(Path(tmp) / "state", config)
        names = {"temporal", "kafka", "redis", "dashscope"} | ({"receiver"} if incidents else set())
        async with services(base, names) as endpoints:
            settings = base.model_copy(update={"kafka_bootstrap": endpoints.kafka})
            await ensure_topics(endpoints.kafka, settings.kafka)
            ports = {k: free_port() for k in ("WORKER", "BRIDGE", "WORKER_SDK", "BRIDGE_SDK")}
            env = {
                **os.environ,
                "RISKFLOW_TEMPORAL_ADDRESS": endpoints.temporal,
                "RISKFLOW_KAFKA_BOOTSTRAP": endpoints.kafka,
                "RISKFLOW_REDIS_URL": endpoints.redis,
                "RISKFLOW_DASHSCOPE_BASE_URL": endpoints.dashscope,
                "RISKFLOW_BRIDGE__MODE": args.mode,
                "RISKFLOW_LOCAL__RECEIVER_PORT": str(settings.local.receiver_port),
                "RISKFLOW_LOCAL__SMTP_PORT": str(settings.local.smtp_port),
                **{f"RISKFLOW_METRICS__{k}_PORT": str(v) for k, v in ports.items()},
            }
            procs = {
                role: await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "cli",
                    "--config-dir",
                    str(config),
                    "--log-level",
                    "WARNING",
                    role,
                    "run",
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                for role in ("worker", "bridge")
            }
            await asyncio.sleep(5)
            until = time.monotonic() + args.minutes * 60
            sent: list[int] = [0]
            latencies: list[tuple[float, float]] = []
            samples: list[dict[str, float]] = []
            falls_from: dict[str, list[float]] = {}
            stop = asyncio.Event()
            producing = asyncio.create_task(
                cameras(settings, args.cameras, args.fps, until, sent, falls_from)
            )
            told: list[Told] = []
            collecting = asyncio.create_task(
                first_notifications(endpoints.receiver, falls_from, latencies, stop, told)
                if incidents
                else results(settings, latencies, stop)
            )
            started = time.monotonic()
            while time.monotonic() < until:
                await asyncio.sleep(args.sample)
                now = time.time()
                window = [lat for at, lat in latencies if at > now - args.sample] or [float("nan")]
                qs = statistics.quantiles(window, n=20) if len(window) > 1 else window * 19
                samples.append(
                    {
                        "t": time.monotonic() - started,
                        "sent": sent[0],
                        "results": len(latencies),
                        "lag": await lag(ports["BRIDGE"]),
                        "latency_p50": statistics.median(window),
                        "latency_p95": qs[18],
                        "rss_worker": rss_mb(procs["worker"].pid),
                        "rss_bridge": rss_mb(procs["bridge"].pid),
                    }
                )
            await producing
            await asyncio.sleep(args.settle)
            stop.set()
            await collecting
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
            phases: dict[str, dict[str, float]] = {}
            if incidents:
                client = await connect(endpoints.temporal, settings.temporal.namespace)
                phases = await breakdown(client, told)
    RESULTS.mkdir(exist_ok=True)
    png = RESULTS / "soak.png"
    plot(samples, png)
    all_latencies = [lat for _, lat in latencies]
    qs = statistics.quantiles(all_latencies, n=100)
    report(
        "soak",
        {
            "mode": args.mode,
            "latency_of": "capture -> first notification of each incident"
            if incidents
            else "capture -> assessment on the results topic",
            "cameras": args.cameras,
            "fps": args.fps,
            "minutes": args.minutes,
            "detection_messages": sent[0],
            ("incidents_told" if incidents else "assessments"): len(latencies),
            "latency": {"p50": round(qs[49], 3), "p95": round(qs[94], 3), "p99": round(qs[98], 3)},
            "max_lag": max(s["lag"] for s in samples),
            **({"latency_breakdown": phases} if incidents else {}),
            "rss_mb": {
                role: {
                    "first": round(samples[0][f"rss_{role}"], 1),
                    "last": round(samples[-1][f"rss_{role}"], 1),
                }
                for role in ("worker", "bridge")
            },
            # RSS at the end against the first sample of the same run (flat: about 1).
            "ratio_rss_last_vs_first": {
                role: round(samples[-1][f"rss_{role}"] / samples[0][f"rss_{role}"], 3)
                for role in ("worker", "bridge")
            },
            "plot": str(png),
            "samples": samples,
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("incidents", "assessments"), default="incidents")
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--resolve-after", type=float, default=60.0, help="incidents: auto-resolve after (s)"
    )
    parser.add_argument(
        "--settle", type=float, default=10.0, help="s to wait for results after the last frame"
    )
    asyncio.run(main(parser.parse_args()))
