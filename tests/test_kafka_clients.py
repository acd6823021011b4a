"""The local stack's default broker speaks to the standard Kafka clients users read topics
with: kcat and confluent-kafka (both librdkafka) and aiokafka (riskflow's own), each producing
what each other one consumes, with keys, in consumer groups that commit."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import ensure_topics, make_consumer

Records = list[tuple[str, str]]  # (key, value)
COUNT = 30


def kcat_binary() -> str:
    found = shutil.which("kcat")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("kcat is missing (.ci/run installs Debian's kcat package)")
        pytest.skip("kcat not installed")
    return found


async def kcat(*args: str, stdin: bytes | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        kcat_binary(),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def kcat_produce(bootstrap: str, topic: str, records: Records) -> None:
    lines = "".join(f"{key}\t{value}\n" for key, value in records)
    await kcat(
        "-b", bootstrap, "-P", "-t", topic, "-K", "\t", "-X", "acks=all", stdin=lines.encode()
    )


async def kcat_consume(bootstrap: str, topic: str, count: int) -> Records:
    """As a member of a consumer group (kcat -G), which commits what it read."""
    group = f"kcat-{uuid.uuid4().hex[:8]}"
    out = await kcat(
        "-b", bootstrap, "-G", group, "-o", "beginning", "-c", str(count), "-f", "%k\t%s\n",
        "-X", "auto.offset.reset=earliest", topic,
    )  # fmt: skip
    return [(line.split("\t", 1)[0], line.split("\t", 1)[1]) for line in out.splitlines()]


def _confluent_produce(bootstrap: str, topic: str, records: Records) -> None:
    from confluent_kafka import KafkaError, Producer

    errors: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value in records:
        producer.produce(
            topic, value.encode(), key.encode(), on_delivery=lambda e, _: errors.append(e)
        )
    assert producer.flush(30) == 0, "not every record was delivered"
    assert errors == [None] * len(records)


def _confluent_consume(bootstrap: str, topic: str, count: int) -> Records:
    """In a consumer group, committing synchronously what it read."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"confluent-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: Records = []
    try:
        for _ in range(120):  # polls of 0.5 s at most; ends as soon as all are read
            message = consumer.poll(0.5)
            if message is None:
                continue
            key, value = message.key(), message.value()
            assert message.error() is None and key is not None and value is not None
            found.append((key.decode(), value.decode()))
            if len(found) == count:
                consumer.commit(asynchronous=False)
                break
    finally:
        consumer.close()
    return found


async def confluent_produce(bootstrap: str, topic: str, records: Records) -> None:
    await asyncio.to_thread(_confluent_produce, bootstrap, topic, records)


async def confluent_consume(bootstrap: str, topic: str, count: int) -> Records:
    return await asyncio.to_thread(_confluent_consume, bootstrap, topic, count)


async def aiokafka_produce(bootstrap: str, topic: str, records: Records) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value.encode(), key=key.encode())
    finally:
        await producer.stop()


async def aiokafka_consume(bootstrap: str, topic: str, count: int) -> Records:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"aiokafka-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: Records = []
    try:
        async with asyncio.timeout(60):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for record in (r for records in batch.values() for r in records):
                    assert record.key is not None and record.value is not None
                    found.append((record.key.decode(), record.value.decode()))
        await consumer.commit()
    finally:
        await consumer.stop()
    return found


Produce = Callable[[str, str, Records], Awaitable[None]]
Consume = Callable[[str, str, int], Awaitable[Records]]
PRODUCERS: dict[str, Produce] = {
    "kcat": kcat_produce,
    "confluent": confluent_produce,
    "aiokafka": aiokafka_produce,
}
CONSUMERS: dict[str, Consume] = {
    "kcat": kcat_consume,
    "confluent": confluent_consume,
    "aiokafka": aiokafka_consume,
}
PAIRS = [(p, c) for p in PRODUCERS for c in CONSUMERS if p != c]


@pytest.mark.parametrize(("producer", "consumer"), PAIRS)
async def test_standard_clients_round_trip(
    stack: Endpoints, settings: Settings, producer: str, consumer: str
) -> None:
    """What one client produces (keyed, acks=all) the other reads whole, in a group that
    commits: kcat -> confluent-kafka and back, and each of them with aiokafka."""
    topic = f"clients-{producer}-{consumer}-{uuid.uuid4().hex[:6]}"
    await ensure_topics(stack.kafka, settings.kafka, (topic,))
    records = [(f"camera-{i % 4}", f"{producer}-{i}-{uuid.uuid4().hex}") for i in range(COUNT)]
    await PRODUCERS[producer](stack.kafka, topic, records)
    found = await CONSUMERS[consumer](stack.kafka, topic, COUNT)
    assert sorted(found) == sorted(records)


async def test_group_offsets_committed_by_librdkafka_are_seen_by_aiokafka(
    stack: Endpoints, settings: Settings
) -> None:
    """A confluent-kafka group's commit is the broker's: aiokafka, in the same group, starts
    after it (reads only what was produced since) and sees the committed offsets."""
    topic, group = f"clients-commit-{uuid.uuid4().hex[:6]}", f"shared-{uuid.uuid4().hex[:6]}"
    await ensure_topics(stack.kafka, settings.kafka, (topic,))
    first = [(f"k{i}", f"first-{i}") for i in range(COUNT)]
    await kcat_produce(stack.kafka, topic, first)

    def consume_and_commit() -> int:
        from confluent_kafka import Consumer

        consumer = Consumer(
            {
                "bootstrap.servers": stack.kafka,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        read = 0
        for _ in range(120):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                read += 1
                if read == COUNT:
                    break
        consumer.commit(asynchronous=False)
        consumer.close()
        return read

    assert await asyncio.to_thread(consume_and_commit) == COUNT
    later = [(f"k{i}", f"later-{i}") for i in range(5)]
    await kcat_produce(stack.kafka, topic, later)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.kafka, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        committed = [await consumer.committed(tp) or 0 for tp in partitions]
        assert sum(committed) == COUNT
        found: Records = []
        async with asyncio.timeout(60):
            while len(found) < len(later):
                batch = await consumer.getmany(timeout_ms=500)
                found += [
                    (r.key.decode(), r.value.decode())
                    for records in batch.values()
                    for r in records
                ]
        assert sorted(found) == sorted(later)
    finally:
        await consumer.stop()


async def test_an_idle_consumer_paces_the_fetches_the_broker_answers_empty_at_once(
    stack: Endpoints, settings: Settings
) -> None:
    """Kafka holds a fetch that finds nothing for up to `fetch_max_wait_ms`; the local broker
    answers it at once (thousands of fetches a second from one idle aiokafka consumer).
    riskflow's consumer starts its next fetch to a broker no sooner than
    `empty_fetch_backoff_ms` after an empty one, still reads a record produced while it
    idles, and stops cleanly with a paced fetch pending."""
    topic = f"clients-idle-{uuid.uuid4().hex[:6]}"
    await ensure_topics(stack.kafka, settings.kafka, (topic,))
    consumer = make_consumer(stack.kafka, settings.kafka, topic, group_id=None)
    await consumer.start()
    try:
        assert consumer.paced_fetches
        fetcher = consumer._fetcher
        paced = fetcher._proc_fetch_request
        fetches = 0

        async def counted(*args: object) -> object:
            nonlocal fetches
            fetches += 1
            return await paced(*args)

        fetcher._proc_fetch_request = counted
        loop = asyncio.get_running_loop()
        began = loop.time()
        for _ in range(5):
            assert await consumer.getmany(timeout_ms=200) == {}
        elapsed = loop.time() - began
        # One broker: each counted fetch starts at least the backoff after the one before.
        assert fetches <= elapsed / (settings.kafka.empty_fetch_backoff_ms / 1000) + 2
        await aiokafka_produce(stack.kafka, topic, [("camera-0", "after the idle spell")])
        found: Records = []
        async with asyncio.timeout(60):
            while not found:
                batch = await consumer.getmany(timeout_ms=500)
                found += [(r.key.decode(), r.value.decode()) for rs in batch.values() for r in rs]
        assert found == [("camera-0", "after the idle spell")]
    finally:
        await consumer.stop()
