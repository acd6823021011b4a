"""Detections to Kafka through a bounded queue: inference never waits for the network.

`offer()` never blocks. When the broker stalls and the queue is full, the oldest waiting
message is dropped (a camera's newest state matters most), counted and logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Protocol

from riskflow.events import DetectionEvent
from riskflow.metrics import EDGE_FRAMES, EDGE_PUBLISH
from riskflow.names import DETECTION_TOPIC
from riskflow.telemetry import inject_headers, tracer

logger = logging.getLogger(__name__)

_Item = tuple[str, bytes, list[tuple[str, bytes]], float]


class Producer(Protocol):
    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[object]: ...

    async def flush(self) -> None: ...


class DetectionPublisher:
    def __init__(self, producer: Producer, max_queue: int = 1000, topic: str = DETECTION_TOPIC):
        self._producer = producer
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(max_queue)
        self._topic = topic
        self.dropped = 0
        self.published = 0

    def offer(self, event: DetectionEvent) -> None:
        """Queue one frame's detections; starts the event's trace (carried in the headers)."""
        attributes: dict[str, str | int] = {"camera": event.camera_id, "frame": event.frame_id}
        with tracer().start_as_current_span("edge.publish", attributes=attributes):
            headers = inject_headers()
        item = (event.camera_id, event.model_dump_json().encode(), headers, time.perf_counter())
        if self._queue.full():
            camera = self._queue.get_nowait()[0]
            self.dropped += 1
            EDGE_FRAMES.labels(camera, "dropped").inc()
            if self.dropped == 1 or self.dropped % 100 == 0:
                logger.warning(
                    "broker too slow: %d detection messages dropped so far", self.dropped
                )
        self._queue.put_nowait(item)

    async def run(self) -> None:
        """Hand queued messages to the producer (which batches and compresses them)."""
        while True:
            camera, value, headers, queued = await self._queue.get()
            ack = await self._producer.send(
                self._topic, value=value, key=camera.encode(), headers=headers
            )
            ack.add_done_callback(functools.partial(self._acked, camera=camera, queued=queued))

    def _acked(self, future: asyncio.Future[object], *, camera: str, queued: float) -> None:
        if future.cancelled() or future.exception() is not None:
            EDGE_FRAMES.labels(camera, "dropped").inc()
            self.dropped += 1
            logger.warning("publish failed for camera %s: %s", camera, future.exception())
            return
        self.published += 1
        EDGE_FRAMES.labels(camera, "published").inc()
        EDGE_PUBLISH.labels(camera).observe(time.perf_counter() - queued)

    def pending(self) -> int:
        return self._queue.qsize()

    async def drain(self, within: float = 10.0) -> None:
        """Wait until the queue is handed over and the producer flushed (at shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        for _ in range(int(within / 0.01)):
            if not self._queue.qsize():
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(self._producer.flush(), max(0.1, deadline - loop.time()))
