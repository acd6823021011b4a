"""The edge publisher on a real broker of the test's own: it survives every way a send can
fail (a paused broker, a closed producer, a message the broker will never take), keeps the
significant frames when its backlog is full, and counts what it drops by reason."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from detection_edge.backlog import Backlog, Item
from detection_edge.publisher import DetectionPublisher
from devstack.localstack.services import local_services
from devstack.simulate import scene_event
from riskflow.config.settings import Settings
from riskflow.infra.kafka import ensure_topics, make_producer, start_client
from riskflow.names import DETECTION_TOPIC
from tests.conftest import local_settings, read_topic

# Short enough that a paused broker fails a send within seconds (the old publisher's task
# ended on the first such failure: aiokafka's default 40 s made that "after 40 s of outage").
REQUEST_TIMEOUT_MS = 1500


@dataclass
class Broker:
    address: str
    pid: int
    settings: Settings

    def producer(self, **extra: object) -> AIOKafkaProducer:
        return make_producer(
            self.address,
            self.settings.kafka,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            max_batch_size=1024,
            retry_backoff_ms=50,
            **extra,
        )


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    own = local_settings(tmp_path / "state")
    (kafka,) = [s for s in local_services(own) if s.name == "kafka"]
    process = kafka.process(own.local.state_dir)
    pid = process.start()
    try:
        for _ in range(100):
            try:
                await ensure_topics(kafka.address, own.kafka, (DETECTION_TOPIC,))
                break
            except Exception:
                await asyncio.sleep(0.2)
        yield Broker(kafka.address, pid, own)
    finally:
        os.kill(pid, signal.SIGCONT)
        process.stop()


async def until(condition: Callable[[], bool], within: float = 60.0) -> None:
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def mine(camera: str) -> Callable[[dict[str, object]], bool]:
    return lambda data: data.get("camera_id") == camera


async def test_publishing_survives_a_broker_outage_longer_than_its_timeouts(
    broker: Broker,
) -> None:
    producer = broker.producer()
    await start_client(producer)
    publisher = DetectionPublisher(producer, max_queue=50)
    sender = asyncio.create_task(publisher.run())
    now = datetime.now(UTC)
    try:
        publisher.offer(scene_event("warm", 0, now, 1, 0))
        await until(lambda: publisher.published == 1)
        os.kill(broker.pid, signal.SIGSTOP)
        publisher.offer(scene_event("out-fall", 0, now, 2, 1))  # offered first: oldest
        for frame in range(1, 100_000):  # until sends timed out several times over
            publisher.offer(scene_event("out-empty", frame, now, 0, 0))
            publisher.offer(scene_event("out-people", frame, now, 1, 0))
            await asyncio.sleep(0.01)
            if publisher.failures >= 3 and publisher.drops["empty"]:
                break
        assert not sender.done()
        os.kill(broker.pid, signal.SIGCONT)
        publisher.offer(scene_event("after", 0, now, 1, 0))
        assert await read_topic(broker.address, DETECTION_TOPIC, mine("after"), 1, 60)
        # At least once: a send that timed out may have reached the broker too.
        falls = await read_topic(broker.address, DETECTION_TOPIC, mine("out-fall"), 1, 60)
        assert falls and falls[0]["detections"][0]["class_name"] == "Fall"
        assert publisher.drops["empty"] > 0 and publisher.drops["significant_overflow"] == 0
        assert not sender.done()
        sample = REGISTRY.get_sample_value
        labels = {"camera": "out-empty", "reason": "empty"}
        assert sample("riskflow_edge_dropped_total", labels) == publisher.drops["empty"]
    finally:
        os.kill(broker.pid, signal.SIGCONT)
        sender.cancel()
        await publisher.stop()


async def test_a_closed_producer_is_replaced_and_publishing_goes_on(broker: Broker) -> None:
    first = broker.producer()
    await start_client(first)
    made: list[AIOKafkaProducer] = []

    async def restart() -> AIOKafkaProducer:
        fresh = broker.producer()
        await start_client(fresh)
        made.append(fresh)
        return fresh

    publisher = DetectionPublisher(first, max_queue=10, restart=restart)
    sender = asyncio.create_task(publisher.run())
    try:
        await first.stop()  # closed under the publisher (a client bug, a fenced producer)
        publisher.offer(scene_event("closed", 0, datetime.now(UTC), 1, 0))
        assert await read_topic(broker.address, DETECTION_TOPIC, mine("closed"), 1, 60)
        assert made and not sender.done()
    finally:
        sender.cancel()
        await publisher.stop()


async def test_a_message_the_broker_never_takes_is_dropped_and_the_rest_flow(
    broker: Broker,
) -> None:
    producer = broker.producer(max_request_size=2000)
    await start_client(producer)
    publisher = DetectionPublisher(producer, max_queue=10)
    sender = asyncio.create_task(publisher.run())
    now = datetime.now(UTC)
    try:
        publisher.offer(scene_event("huge", 0, now, 40, 0))  # about 8 kB of JSON
        publisher.offer(scene_event("small", 1, now, 1, 0))
        assert await read_topic(broker.address, DETECTION_TOPIC, mine("small"), 1, 60)
        assert publisher.drops == {"rejected": 1} and not sender.done()
    finally:
        sender.cancel()
        await publisher.stop()


async def test_unsent_messages_at_exit_are_counted_not_raised(broker: Broker) -> None:
    producer = broker.producer()
    await start_client(producer)
    publisher = DetectionPublisher(producer, max_queue=10)
    os.kill(broker.pid, signal.SIGSTOP)
    for frame in range(3):
        publisher.offer(scene_event("exit", frame, datetime.now(UTC), 1, 0))
    await publisher.drain(within_seconds=0.5)  # no sender: nothing leaves
    assert publisher.drops == {"unsent_at_exit": 3}
    os.kill(broker.pid, signal.SIGCONT)
    await publisher.stop()


def item(seq: int, kind: str) -> Item:
    return Item(seq, "c", kind, b"")  # type: ignore[arg-type]


def test_backlog_drops_empty_then_detections_and_keeps_significant_apart() -> None:
    backlog = Backlog(max_queue=3, max_significant=2)
    assert backlog.put(item(1, "significant")) == []
    for seq, kind in [(2, "detections"), (3, "empty"), (4, "detections")]:
        assert backlog.put(item(seq, kind)) == []
    (drop,) = backlog.put(item(5, "detections"))
    assert (drop.item.seq, drop.reason) == (3, "empty")
    (drop,) = backlog.put(item(6, "empty"))
    assert (drop.item.seq, drop.reason) == (6, "empty")  # the newest empty, itself
    (drop,) = backlog.put(item(7, "detections"))
    assert (drop.item.seq, drop.reason) == (2, "detections")
    assert backlog.put(item(8, "significant")) == []
    (drop,) = backlog.put(item(9, "significant"))
    assert (drop.item.seq, drop.reason) == (1, "significant_overflow")
    assert [backlog.pop().seq for _ in range(len(backlog))] == [4, 5, 7, 8, 9]  # type: ignore[union-attr]
    assert backlog.pop() is None


def test_a_failed_send_goes_back_in_its_place() -> None:
    backlog = Backlog(max_queue=5, max_significant=5)
    for seq in (1, 2, 3):
        backlog.put(item(seq, "detections"))
    first, second = backlog.pop(), backlog.pop()
    assert first is not None and second is not None
    backlog.put(item(4, "significant"))
    backlog.put_back(second)
    backlog.put_back(first)
    assert [backlog.pop().seq for _ in range(4)] == [1, 2, 3, 4]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="at least 1"):
        Backlog(0, 1)
