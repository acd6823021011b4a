"""The incident path end to end on the local stack, with the local DashScope server answering
at once: capture -> the incident's first notification (its `notify` activity, recorded here
instead of sent to a channel).

1. Throughput: N significant events of N cameras produced at once; first notifications/s, as
   a ratio of a bare one-activity workflow started N times against the same Temporal server
   (the mean of one run before and one after).
2. Latency: events of new cameras at a fixed rate (default 10/s); capture timestamp to the
   first notification, p50/p95/p99.

    python -m bench.incidents [--events 200] [--rate 10] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import yaml
from temporalio import activity

from bench._stack import bench_settings, report, services
from bench.e2e import KEYS, bare, percentiles
from devstack.simulate import scene_event
from riskflow.config.services import MetricsSettings
from riskflow.config.settings import Settings
from riskflow.contracts.notifications import NotificationRequest, NotificationResult
from riskflow.infra.kafka import ensure_topics, make_producer
from riskflow.names import DETECTION_TOPIC
from workers.bridge.bridge import run_bridge
from workers.common.client import connect
from workers.worker.worker import build_worker, worker_deps


class FirstNotifications:
    """Seconds from capture to the first notification of each incident, by camera."""

    def __init__(self) -> None:
        self.latency: dict[str, float] = {}
        self.captured: dict[str, float] = {}
        self.changed = asyncio.Event()

    @activity.defn(name="notify")
    async def notify(self, request: NotificationRequest) -> NotificationResult:
        camera = request.camera_id
        if camera in self.captured and camera not in self.latency:
            self.latency[camera] = time.time() - self.captured[camera]
            self.changed.set()
        return NotificationResult(channel=request.channel, status="sent")

    async def wait(self, cameras: list[str], within: float = 300.0) -> list[float]:
        deadline = time.monotonic() + within
        while any(c not in self.latency for c in cameras):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return [self.latency[c] for c in cameras if c in self.latency]


async def produce(
    settings: Settings, cameras: list[str], rate: float | None, seen: FirstNotifications
) -> None:
    producer = make_producer(settings.kafka_bootstrap or "", settings.kafka)
    await producer.start()
    try:
        for camera in cameras:
            event = scene_event(camera, 0, datetime.now(UTC), people=2, falls=1)
            seen.captured[camera] = event.captured_at.timestamp()
            await producer.send(
                DETECTION_TOPIC, event.model_dump_json().encode(), key=camera.encode()
            )
            if rate:
                await asyncio.sleep(1 / rate)
        await producer.flush()
    finally:
        await producer.stop()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config"
        config.mkdir()
        (config / "api_keys.yaml").write_text(yaml.safe_dump(KEYS))
        base = bench_settings(Path(tmp) / "state", config)
        async with services(base, {"temporal", "kafka", "redis", "dashscope"}) as endpoints:
            settings = base.model_copy(
                update={
                    "temporal_address": endpoints.temporal,
                    "kafka_bootstrap": endpoints.kafka,
                    "redis_url": endpoints.redis,
                    "dashscope_base_url": endpoints.dashscope,
                    "metrics": MetricsSettings(enabled=False),
                    "bridge": base.bridge.model_copy(update={"mode": "incidents"}),
                }
            )
            await ensure_topics(endpoints.kafka, settings.kafka)
            client = await connect(endpoints.temporal, settings.temporal.namespace)
            baseline = await bare(client, args.events)
            seen = FirstNotifications()
            stop = asyncio.Event()
            async with (
                worker_deps(settings, endpoints) as deps,
                build_worker(
                    client, settings, deps, settings.temporal.task_queue, notify=seen.notify
                ),
            ):
                bridge = asyncio.create_task(run_bridge(settings, stop))
                await asyncio.sleep(2)  # the bridge joins its group
                tag = f"tp{uuid.uuid4().hex[:6]}"
                cameras = [f"{tag}-{i}" for i in range(args.events)]
                started = time.perf_counter()
                await produce(settings, cameras, None, seen)
                done = await seen.wait(cameras)
                throughput = len(done) / (time.perf_counter() - started)
                # The bare baseline again, after: the ratio is against the mean of both, so a
                # load that comes or goes on a shared machine mid-run skews it less.
                baseline_after = await bare(client, args.events)
                tag = f"lat{uuid.uuid4().hex[:6]}"
                cameras = [f"{tag}-{i}" for i in range(int(args.rate * args.seconds))]
                await produce(settings, cameras, args.rate, seen)
                latencies = await seen.wait(cameras)
                stop.set()
                await bridge
    bare_runs = [round(baseline, 2), round(baseline_after, 2)]
    baseline = (baseline + baseline_after) / 2
    figures = {
        "events": args.events,
        "bare_workflows_per_s": round(baseline, 2),
        "bare_workflows_per_s_before_after": bare_runs,
        "first_notifications_per_s": round(throughput, 2),
        "ratio_vs_bare_workflow": round(throughput / baseline, 4),
        "latency_at_rate": {
            "events_per_s": args.rate,
            "events": len(cameras),
            "notified": len(latencies),
            **percentiles(latencies),
        },
    }
    report("incidents", figures)
    print(f"bare one-activity workflows/s {baseline:8.2f}  (before, after: {bare_runs})")
    print(f"first notifications/s         {throughput:8.2f}  ratio {throughput / baseline:.3f}")
    print(f"capture -> first notification at {args.rate}/s: {percentiles(latencies)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    asyncio.run(main(parser.parse_args()))
