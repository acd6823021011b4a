"""Detections to Kafka through a bounded backlog: inference never waits for the network, and
no broker error ends publishing.

`offer()` never blocks. While the broker is away (for any length of time) messages wait in a
`Backlog` (see `detection_edge.backlog` for which frames are dropped first when it is full);
a send that fails goes back in its place and is retried with backoff (0.1 s doubling to 5 s).
Delivery is at least once (a send that timed out may have reached the broker), and a retried
message may land after newer ones of its camera; consumers order by `captured_at`.
Every drop is counted by reason in `riskflow_edge_dropped_total{camera,reason}`:
`empty`, `detections`, `significant_overflow` (backlog full), `rejected` (the broker or the
client refuses this message for good, e.g. larger than `max_request_size`), `unsent_at_exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal, Protocol

from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from detection_edge.backlog import Backlog, Dropped, Item, Kind
from riskflow.contracts.events import DetectionEvent
from riskflow.infra.metrics import EDGE_DROPPED, EDGE_FRAMES, EDGE_PUBLISH
from riskflow.infra.telemetry import inject_headers, tracer
from riskflow.names import DETECTION_TOPIC

logger = logging.getLogger(__name__)

Action = Literal["retry", "restart", "reject"]
MAX_BACKOFF_SECONDS = 5.0
MAX_RESTARTS_PER_MESSAGE = 5


class Producer(Protocol):
    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[object]: ...

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...


def classify(exc: BaseException) -> Action:
    """What a send error means: `retry` the message on this producer (the broker is away or
    busy), `reject` it (this message can never be sent), or `restart` the producer first
    (closed, fenced, or an error nobody expected) and then retry."""
    if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError | TypeError):
        return "reject"
    if isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and exc.retriable):
        return "retry"
    return "restart"


def kind_of(event: DetectionEvent, keep_classes: frozenset[str]) -> Kind:
    if not event.detections:
        return "empty"
    if any(d.class_name in keep_classes for d in event.detections):
        return "significant"
    return "detections"


class DetectionPublisher:
    def __init__(
        self,
        producer: Producer,
        max_queue: int = 1000,
        topic: str = DETECTION_TOPIC,
        *,
        keep_classes: Iterable[str] = ("Fall", "fall"),
        max_significant: int | None = None,
        restart: Callable[[], Awaitable[Producer]] | None = None,
    ) -> None:
        """`restart` makes and starts a fresh producer (retrying until the broker answers);
        without it a broken producer is retried as it is."""
        self._producer = producer
        self._backlog = Backlog(max_queue, max_significant or max_queue)
        self._topic = topic
        self._keep = frozenset(keep_classes)
        self._restart = restart
        self._ready = asyncio.Event()
        self._ack_error: BaseException | None = None
        self._delay = 0.1
        self._seq = 0
        self._restarts: Counter[int] = Counter()  # seq -> restarts caused
        self.drops: Counter[str] = Counter()
        self.published = 0
        self.failures = 0  # send errors survived

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def offer(self, event: DetectionEvent) -> None:
        """Queue one frame's detections; starts the event's trace (carried in the headers)."""
        attributes: dict[str, str | int] = {"camera": event.camera_id, "frame": event.frame_id}
        with tracer().start_as_current_span("edge.publish", attributes=attributes):
            headers = inject_headers()
        self._seq += 1
        item = Item(
            self._seq,
            event.camera_id,
            kind_of(event, self._keep),
            event.model_dump_json().encode(),
            headers,
            time.perf_counter(),
        )
        self._count(self._backlog.put(item))
        self._ready.set()

    async def run(self) -> None:
        """Hand queued messages to the producer (which batches and compresses them), for ever:
        no exception but cancellation ends this loop."""
        while True:
            if self._ack_error is not None:  # the broker lost messages just now
                error, self._ack_error = self._ack_error, None
                await self._backoff()
                if classify(error) == "restart":  # fenced, sequence lost: a fresh producer
                    await self._restart_producer(error)
            item = self._backlog.pop()
            if item is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            try:
                ack = await self._producer.send(
                    self._topic, value=item.value, key=item.camera.encode(), headers=item.headers
                )
            except asyncio.CancelledError:
                self._backlog.put_back(item)
                raise
            except Exception as exc:
                await self._failed(item, exc)
                continue
            ack.add_done_callback(functools.partial(self._acked, item=item))

    async def _backoff(self) -> None:
        """Wait before the next send after a failure: 0.1 s doubling to 5 s, reset by an ack."""
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, MAX_BACKOFF_SECONDS)

    async def _failed(self, item: Item, exc: Exception) -> None:
        self.failures += 1
        action = classify(exc)
        if action == "restart":
            self._restarts[item.seq] += 1
            if self._restarts[item.seq] > MAX_RESTARTS_PER_MESSAGE:
                action = "reject"
        if action == "reject":
            logger.error("detection message of camera %s refused for good: %r", item.camera, exc)
            self._count([Dropped(item, "rejected")])
            return
        self._count(self._backlog.put_back(item))
        if self.failures == 1 or self.failures % 100 == 0:
            logger.warning("publishing failed (%d so far), retrying: %r", self.failures, exc)
        await self._backoff()
        if action == "restart":
            await self._restart_producer(exc)

    async def _restart_producer(self, cause: BaseException) -> None:
        if self._restart is None:
            return
        logger.warning("restarting the Kafka producer after %r", cause)
        with contextlib.suppress(Exception):
            await self._producer.stop()
        try:
            self._producer = await self._restart()
        except Exception as exc:  # still no broker: the next failure tries again
            logger.warning("Kafka producer not restarted: %r", exc)

    def _acked(self, future: asyncio.Future[object], *, item: Item) -> None:
        exc = None if future.cancelled() else future.exception()
        if future.cancelled() or exc is not None:
            if exc is not None and classify(exc) == "reject":
                self._count([Dropped(item, "rejected")])
                return
            self.failures += 1
            self._ack_error = exc or KafkaTimeoutError("send cancelled")
            self._count(self._backlog.put_back(item))
            self._ready.set()
            return
        self._restarts.pop(item.seq, None)
        self._delay = 0.1
        self.published += 1
        EDGE_FRAMES.labels(item.camera, "published").inc()
        EDGE_PUBLISH.labels(item.camera).observe(time.perf_counter() - item.queued)

    def _count(self, dropped: Iterable[Dropped]) -> None:
        for drop in dropped:
            self._restarts.pop(drop.item.seq, None)
            self.drops[drop.reason] += 1
            EDGE_FRAMES.labels(drop.item.camera, "dropped").inc()
            EDGE_DROPPED.labels(drop.item.camera, drop.reason).inc()
            total = self.dropped
            if total == 1 or total % 100 == 0:
                logger.warning("broker too slow or away: %d messages dropped so far", total)

    async def stop(self) -> None:
        """Stop the producer in use (the one given, or the latest restart's)."""
        await self._producer.stop()

    def pending(self) -> int:
        return len(self._backlog)

    async def drain(self, within_seconds: float = 10.0) -> None:
        """At shutdown: wait up to `within_seconds` for the backlog to be sent and the producer
        flushed; what is still unsent then is counted as `unsent_at_exit`. Never raises."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_seconds
        for _ in range(int(within_seconds / 0.01)):
            if not self._backlog or loop.time() >= deadline:
                break
            await asyncio.sleep(0.01)
        try:
            await asyncio.wait_for(self._producer.flush(), max(0.1, deadline - loop.time()))
        except Exception as exc:  # the broker is away at shutdown: count, never raise
            logger.warning("producer not flushed at exit: %r", exc)
        while (item := self._backlog.pop()) is not None:
            self._count([Dropped(item, "unsent_at_exit")])
