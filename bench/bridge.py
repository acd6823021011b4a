"""Bridge throughput, one process.

1. Filtering: insignificant detection messages consumed, parsed and judged per second.
2. Starting: significant messages turned into workflow starts per second, as a ratio of a bare
   `client.start_workflow` loop (same concurrency) against the same Temporal server.

    python -m bench.bridge [--messages 5000] [--starts 300]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client

from bench._stack import bench_settings, report, services
from bench.bare_workflow import BareWorkflow
from devstack.simulate import scene_event
from riskflow.config.bridge import BridgeSettings
from riskflow.config.services import MetricsSettings
from riskflow.config.settings import Settings
from riskflow.contracts.events import BBox, Detection, DetectionEvent, ImageSize
from riskflow.infra.kafka import ensure_topics, make_consumer, make_producer
from riskflow.names import DETECTION_TOPIC
from workers.bridge.bridge import Bridge
from workers.common.client import connect

CONFIG = Path(__file__).resolve().parent.parent / "config"


def car(camera: str, frame: int) -> DetectionEvent:
    box = BBox(x1=10, y1=10, x2=200, y2=120)
    return DetectionEvent(
        camera_id=camera,
        frame_id=frame,
        captured_at=datetime.now(UTC),
        image=ImageSize(width=1280, height=720),
        model_name="bench",
        detections=[Detection(class_name="car", class_id=2, confidence=0.9, bbox=box)] * 3,
    )


async def produce(settings: Settings, events: list[DetectionEvent]) -> None:
    producer = make_producer(settings.kafka_bootstrap or "", settings.kafka, linger_ms=20)
    await producer.start()
    try:
        for e in events:
            await producer.send(
                DETECTION_TOPIC, e.model_dump_json().encode(), key=e.camera_id.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


async def bridge_rate(settings: Settings, client: Client, count: int, outcome: str) -> float:
    """Messages/s from the first handled message until `count` have the given outcome."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    tuned = settings.model_copy(
        update={"bridge": BridgeSettings(mode="assessments", group_id=group, fetch_max_records=500)}
    )
    consumer = make_consumer(
        settings.kafka_bootstrap or "", settings.kafka, DETECTION_TOPIC, group_id=group
    )
    producer = make_producer(settings.kafka_bootstrap or "", settings.kafka)
    await consumer.start()
    await producer.start()
    bridge = Bridge(consumer, producer, client, tuned)
    task = asyncio.create_task(bridge.run())
    try:
        for _ in range(60_000):
            if sum(bridge.counts.values()):
                break
            await asyncio.sleep(0.001)
        started = time.perf_counter()
        for _ in range(600_000):
            if bridge.counts[outcome] >= count:
                break
            await asyncio.sleep(0.001)
        return bridge.counts[outcome] / (time.perf_counter() - started)
    finally:
        bridge.stop()
        await task
        await consumer.stop()
        await producer.stop()


async def bare_starts(client: Client, count: int, concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)
    tag = uuid.uuid4().hex[:8]

    async def start(i: int) -> None:
        async with limit:
            await client.start_workflow(
                BareWorkflow.run, str(i), id=f"bare-{tag}-{i}", task_queue="nowhere"
            )

    started = time.perf_counter()
    await asyncio.gather(*(start(i) for i in range(count)))
    return count / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = bench_settings(Path(tmp) / "state", CONFIG)
        async with services(base, {"temporal", "kafka"}) as endpoints:
            settings = base.model_copy(
                update={
                    "kafka_bootstrap": endpoints.kafka,
                    "temporal_address": endpoints.temporal,
                    "metrics": MetricsSettings(enabled=False),
                }
            )
            await ensure_topics(endpoints.kafka, settings.kafka)
            client = await connect(endpoints.temporal, settings.temporal.namespace)
            await produce(settings, [car(f"c{i % 50}", i) for i in range(args.messages)])
            filtering = await bridge_rate(settings, client, args.messages, "insignificant")
            tag = uuid.uuid4().hex[:6]
            falls = [
                scene_event(f"{tag}-{i}", 0, datetime.now(UTC), 1, 1) for i in range(args.starts)
            ]
            await produce(settings, falls)
            starting = await bridge_rate(settings, client, args.starts, "started")
            bare = await bare_starts(client, args.starts, settings.bridge.max_in_flight)
    report(
        "bridge",
        {
            "filtered_messages_per_s": round(filtering, 1),
            "workflow_starts_per_s": round(starting, 1),
            "bare_start_loop_per_s": round(bare, 1),
            "ratio_starts_vs_bare": round(starting / bare, 4),
            "messages": args.messages,
            "starts": args.starts,
        },
    )
    print(f"filtering: {filtering:8.1f} messages/s (one bridge process)")
    ratio = starting / bare
    print(
        f"starting:  {starting:8.1f} workflows/s; bare start loop {bare:.1f}/s; ratio {ratio:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--starts", type=int, default=300)
    asyncio.run(main(parser.parse_args()))
