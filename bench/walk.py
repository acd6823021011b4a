"""Which product modules one detection enters on its way from the edge's publisher to the
first notification (incident mode, the real notify activity and the local receiver): every
module with a function that runs between the publish and the message's arrival, found with a
profile hook on every thread (the worker's workflow threads included), after one warm-up
detection of another camera so that start-up paths are not counted.

    python -m bench.walk

Prints the modules by layer and their number (JSON in bench/results/walk.json).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp

from bench._stack import bench_settings, report, services
from detection_edge.publisher import DetectionPublisher
from devstack.simulate import scene_event
from riskflow.config.services import MetricsSettings
from riskflow.infra.kafka import ensure_topics, make_producer
from workers.bridge.bridge import run_bridge
from workers.common.client import connect
from workers.worker.worker import build_worker, worker_deps

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("riskflow", "activities", "workflows", "workers", "detection_edge", "console")


class Entered:
    """Product modules whose functions were called while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.files: set[str] = set()

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if self.on and event == "call":
            self.files.add(frame.f_code.co_filename)

    def modules(self) -> list[str]:
        found = set()
        for name in self.files:
            path = Path(name)
            if not path.is_relative_to(ROOT):
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts and parts[0] in PACKAGES:
                found.add(".".join(p for p in parts if p != "__init__"))
        return sorted(found)


async def delivered(receiver: str, camera: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"{receiver}/admin/notifications") as response:
                if camera in await response.text():
                    return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"no notification for {camera}")


async def one_detection(publisher: DetectionPublisher, receiver: str, camera: str) -> None:
    publisher.offer(scene_event(camera, 1, datetime.now(UTC), people=2, falls=1))
    await delivered(receiver, camera)


async def main() -> None:
    entered = Entered()
    sys.setprofile(entered.hook)
    threading.setprofile(entered.hook)  # threads started from here on: the workflow threads
    with tempfile.TemporaryDirectory() as tmp:
        base = bench_settings(Path(tmp) / "state", ROOT / "config")
        names = {"temporal", "kafka", "redis", "dashscope", "receiver"}
        async with services(base, names) as endpoints:
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
            producer = make_producer(endpoints.kafka, settings.kafka)
            await producer.start()
            publisher = DetectionPublisher(producer)
            stop = asyncio.Event()
            receiver = endpoints.receiver
            async with (
                worker_deps(settings, endpoints) as deps,
                build_worker(client, settings, deps, settings.temporal.task_queue),
            ):
                publishing = asyncio.create_task(publisher.run())
                bridge = asyncio.create_task(run_bridge(settings, stop))
                tag = uuid.uuid4().hex[:6]
                await one_detection(publisher, receiver, f"warm-{tag}")
                entered.on = True
                await one_detection(publisher, receiver, f"walk-{tag}")
                entered.on = False
                stop.set()
                await bridge
                publishing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publishing
            await producer.stop()
    sys.setprofile(None)
    modules = entered.modules()
    by_layer: dict[str, list[str]] = {}
    for module in modules:
        by_layer.setdefault(module.split(".")[0], []).append(module)
    report("walk", {"modules": len(modules), "by_layer": by_layer})
    for layer, names in by_layer.items():
        print(f"{layer:15} {len(names):3}  {', '.join(names)}")
    print(f"{'in all':15} {len(modules):3}")


if __name__ == "__main__":
    asyncio.run(main())
