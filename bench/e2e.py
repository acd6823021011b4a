"""End to end on the local stack, with the local DashScope server answering at once.

1. Throughput: N significant events produced at once; completed assessments/s, as a ratio of
   a bare one-activity workflow started N times against the same Temporal server.
2. Latency: events at a fixed rate; capture timestamp to result (Redis written, then the
   results topic), p50/p95/p99.

    python -m bench.e2e [--events 200] [--rate 5] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import yaml
from temporalio.client import Client
from temporalio.worker import Worker

from bench._stack import bench_settings, report, services
from bench.bare_workflow import BareWorkflow, echo
from devstack.simulate import scene_event
from riskflow.config.services import MetricsSettings
from riskflow.config.settings import Settings
from riskflow.infra.kafka import ensure_topics, make_consumer, make_producer
from riskflow.names import DETECTION_TOPIC, RESULTS_TOPIC
from workers.bridge.bridge import run_bridge
from workers.common.client import connect
from workers.worker.worker import build_worker, worker_deps

KEYS = {
    "api_keys": [
        {
            "key_id": "k1",
            "key": "sk-bench-1",
            "qps_limit": 1000,
            "rpm_limit": 100000,
            "max_concurrency": 200,
        }
    ]
}


async def bare(client: Client, n: int) -> float:
    queue = f"bare-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[BareWorkflow], activities=[echo]):
        started = time.perf_counter()
        handles = await asyncio.gather(
            *(
                client.start_workflow(
                    BareWorkflow.run, str(i), id=f"bare-{queue}-{i}", task_queue=queue
                )
                for i in range(n)
            )
        )
        await asyncio.gather(*(h.result() for h in handles))
        return n / (time.perf_counter() - started)


async def produce(settings: Settings, count: int, rate: float | None, tag: str) -> None:
    producer = make_producer(settings.kafka_bootstrap or "", settings.kafka)
    await producer.start()
    try:
        for i in range(count):
            event = scene_event(f"{tag}-{i}", 0, datetime.now(UTC), people=1, falls=1)
            await producer.send(
                DETECTION_TOPIC, event.model_dump_json().encode(), key=event.camera_id.encode()
            )
            if rate:
                await asyncio.sleep(1 / rate)
        await producer.flush()
    finally:
        await producer.stop()


async def collect(settings: Settings, tag: str, count: int) -> list[float]:
    """Latencies (s) from capture to the result on the results topic, for `count` results."""
    consumer = make_consumer(
        settings.kafka_bootstrap or "", settings.kafka, RESULTS_TOPIC, group_id=None
    )
    latencies: list[float] = []
    await consumer.start()
    try:
        for _ in range(100_000):
            if len(latencies) >= count:
                break
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for record in (r for rs in batch.values() for r in rs):
                data = json.loads(record.value)
                if data["camera_id"].startswith(tag + "-"):
                    latencies.append(now - data["captured_ms"] / 1000)
    finally:
        await consumer.stop()
    return latencies


def percentiles(values: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(values, n=100)
    return {"p50": round(qs[49], 3), "p95": round(qs[94], 3), "p99": round(qs[98], 3)}


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
                }
            )
            await ensure_topics(endpoints.kafka, settings.kafka)
            client = await connect(endpoints.temporal, settings.temporal.namespace)
            baseline = await bare(client, args.events)
            stop = asyncio.Event()
            async with (
                worker_deps(settings, endpoints) as deps,
                build_worker(client, settings, deps, settings.temporal.task_queue),
            ):
                bridge = asyncio.create_task(run_bridge(settings, stop))
                await asyncio.sleep(2)  # the bridge joins its group
                tag = f"tp{uuid.uuid4().hex[:6]}"
                started = time.perf_counter()
                waiter = asyncio.create_task(collect(settings, tag, args.events))
                await produce(settings, args.events, None, tag)
                await waiter
                throughput = args.events / (time.perf_counter() - started)
                tag = f"lat{uuid.uuid4().hex[:6]}"
                n = int(args.rate * args.seconds)
                waiter = asyncio.create_task(collect(settings, tag, n))
                await produce(settings, n, args.rate, tag)
                latencies = await waiter
                stop.set()
                await bridge
    report(
        "e2e",
        {
            "events": args.events,
            "bare_workflows_per_s": round(baseline, 2),
            "riskflow_assessments_per_s": round(throughput, 2),
            "ratio_vs_bare_workflow": round(throughput / baseline, 4),
            "latency_at_rate": {"events_per_s": args.rate, "events": n, **percentiles(latencies)},
        },
    )
    print(f"bare one-activity workflows/s {baseline:8.2f}")
    print(f"riskflow assessments/s        {throughput:8.2f}  ratio {throughput / baseline:.3f}")
    print(f"capture -> result at {args.rate}/s: {percentiles(latencies)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    asyncio.run(main(parser.parse_args()))
