"""Which partitions the bridge reads (`bridge.assignment`) and what it says when it reads none:
static assignment on the local stack's broker (every partition, offsets committed to the group
without joining it), a commit the group refuses, the watch of periods without partitions, and
how `riskflow status` reads it from the metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY, generate_latest
from temporalio.client import Client

from devstack.simulate import scene_event
from riskflow.config.services import KafkaSettings
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import ensure_topics, make_consumer, make_producer
from riskflow.infra.metrics import UNCOMMITTED_BATCHES
from tests.conftest import eventually
from workers.bridge.bridge import Bridge
from workers.bridge.partitions import (
    AssignmentWatch,
    PartitionMonitor,
    assignment_of,
    bridge_consumer,
)
from workers.common.significance import assess_significance
from workers.supervisor.health import BridgeReading


def tuned(settings: Settings, unique: str, **bridge: object) -> Settings:
    """Assessments on a task queue without workers (a start is the outcome), a group of its own."""
    return settings.model_copy(
        update={
            "bridge": settings.bridge.model_copy(
                update={"mode": "assessments", "group_id": f"parts-{unique}", **bridge}
            ),
            "temporal": settings.temporal.model_copy(update={"task_queue": f"idle-{unique}"}),
        }
    )


# -- which assignment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chosen", "bootstrap", "resolved"),
    [
        ("auto", None, "static"),  # the local stack's broker: one bridge under `riskflow up`
        ("auto", "kafka-1:9092", "group"),  # a configured one: Apache Kafka, several bridges
        ("group", None, "group"),
        ("static", "kafka-1:9092", "static"),
    ],
)
def test_auto_is_static_on_the_local_broker_and_group_on_a_configured_one(
    settings: Settings, chosen: str, bootstrap: str | None, resolved: str
) -> None:
    bridge = settings.bridge.model_copy(update={"assignment": chosen})
    assert (
        assignment_of(settings.model_copy(update={"bridge": bridge, "kafka_bootstrap": bootstrap}))
        == resolved
    )


# -- the watch, on a clock of the test's own ----------------------------------------------


def test_the_watch_counts_periods_without_partitions_after_the_first_assignment() -> None:
    watch = AssignmentWatch(now=100.0)
    assert watch.observe(0, 103.0) is None
    assert watch.unassigned_seconds(103.0) == 3.0  # since it started: not a counted period
    assert (watch.periods, watch.total_seconds(103.0)) == (0, 0.0)
    assert watch.observe(6, 104.0) == "gained"
    assert watch.unassigned_seconds(110.0) == 0.0
    assert watch.observe(0, 110.0) == "lost"  # a rebalance, a group gone
    assert (watch.periods, watch.unassigned_seconds(114.0), watch.total_seconds(114.0)) == (
        1,
        4.0,
        4.0,
    )
    assert watch.observe(6, 116.0) == "gained"
    assert watch.observe(0, 120.0) == "lost"
    assert watch.observe(0, 121.0) is None
    assert (watch.periods, watch.total_seconds(121.0)) == (2, 7.0)


class FakeConsumer:
    """The assignment a monitor samples."""

    def __init__(self, topic_partitions: int) -> None:
        self.held: set[TopicPartition] = set()
        self.topic_partitions = topic_partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.topic_partitions)) or None

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.held = set(partitions)

    def assignment(self) -> set[TopicPartition]:
        return self.held


def reading() -> BridgeReading:
    parsed = BridgeReading.parse(generate_latest(REGISTRY).decode())
    assert parsed is not None
    return parsed


def test_status_reads_no_partitions_and_the_periods_from_the_bridges_metrics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    consumer = FakeConsumer(6)
    monitor = PartitionMonitor(consumer, "detection-results", 30.0, clock=lambda: now[0])
    periods = reading().periods
    now[0] += 12
    monitor.sample()
    first = reading()
    assert (first.assigned, first.topic_partitions, first.unassigned_seconds) == (0, 6, 12.0)
    assert first.problem().startswith("no partitions: has read none of the 6 of detection-results")
    consumer.assign([TopicPartition("detection-results", p) for p in range(6)])
    monitor.sample()
    assert (reading().assigned, reading().problem()) == (6, "")
    consumer.assign([])
    now[0] += 1
    monitor.sample()
    now[0] += 31
    with caplog.at_level(logging.ERROR, logger="workers.bridge.partitions"):
        monitor.sample()
        monitor.sample()  # the error once per period
    assert [r.message[:15] for r in caplog.records] == ["no partitions: "]
    lost = reading()
    assert (lost.unassigned_seconds, lost.periods - periods) == (31.0, 1)
    assert "for 31.0 s" in lost.problem()
    consumer.assign([TopicPartition("detection-results", 0)])
    now[0] += 2
    monitor.sample()
    back = reading()
    assert back.problem() == ""
    assert back.note().startswith("read no partition for ")
    assert back.note().endswith("since it started (now: 1 of 6)")


def test_a_page_without_the_bridge_figures_is_not_read_as_a_bridge() -> None:
    assert BridgeReading.parse("# HELP x y\n# TYPE x gauge\nx 1.0\n") is None
    empty = BridgeReading(0, 0, 2.0, 0, 0.0)
    assert "none of any (none known)" in empty.problem() and empty.note() == ""


# -- static assignment on the local stack's broker (noida-db) -------------------------------


@contextlib.asynccontextmanager
async def static_bridge(
    settings: Settings, stack: Endpoints, client: Client, topic: str
) -> AsyncIterator[Bridge]:
    consumer, static = bridge_consumer(stack.kafka, settings, topic)
    assert static is not None
    producer = make_producer(stack.kafka, settings.kafka)
    await consumer.start()
    await producer.start()
    bridge = Bridge(consumer, producer, client, settings, static)
    runner = asyncio.create_task(bridge.run())
    try:
        yield bridge
    finally:
        bridge.stop()
        try:
            await asyncio.wait_for(runner, 40)
        finally:
            await consumer.stop()
            await producer.stop()


async def send_falls(
    stack: Endpoints, settings: Settings, topic: str, cameras: list[str]
) -> list[str]:
    """A fall on each camera; their workflow ids."""
    producer = make_producer(stack.kafka, settings.kafka)
    ids = []
    await producer.start()
    try:
        for camera in cameras:
            event = scene_event(camera, 0, datetime.now(UTC), people=2, falls=1)
            situation = assess_significance(event, settings.significance)
            assert situation is not None
            ids.append(situation.workflow_id)
            await producer.send_and_wait(
                topic, event.model_dump_json().encode(), key=camera.encode()
            )
    finally:
        await producer.stop()
    return ids


async def committed(stack: Endpoints, kafka: KafkaSettings, group: str, topic: str, n: int) -> int:
    """The sum of the group's committed offsets over the topic's partitions."""
    consumer = make_consumer(stack.kafka, kafka, group_id=group)
    await consumer.start()
    try:
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in range(n)])
    finally:
        await consumer.stop()


async def members(stack: Endpoints, group: str) -> int:
    """How many members the broker counts in `group`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    [(_, name, _, _, _, found, *_)] = response.groups
    assert name == group
    return len(found)


async def started(client: Client, ids: list[str]) -> bool:
    for workflow_id in ids:
        query = f'WorkflowId = "{workflow_id}"'
        if [w async for w in client.list_workflows(query)] == []:
            return False
    return True


async def test_a_static_bridge_reads_every_partition_and_the_next_one_reads_on(
    settings: Settings, stack: Endpoints, client: Client, unique: str
) -> None:
    """No group membership: every partition assigned at once, offsets committed to the group
    (which keeps no member), and a bridge started after it reads only what came since."""
    topic = f"static-{unique}"
    await ensure_topics(stack.kafka, settings.kafka, (topic,))
    own = tuned(settings, unique, assignment="static")
    partitions = settings.kafka.partitions
    first = await send_falls(stack, own, topic, [f"st-{unique}-{i}" for i in range(4)])
    async with static_bridge(own, stack, client, topic) as bridge:
        await eventually(lambda: started(client, first), within=30)
        assert reading().assigned == partitions
        await eventually(
            lambda: _equals(committed(stack, own.kafka, own.bridge.group_id, topic, partitions), 4),
            within=30,
        )
    assert bridge.counts == {"started": 4}
    assert await members(stack, own.bridge.group_id) == 0  # nothing a kill -9 could leave
    later = await send_falls(stack, own, topic, [f"st-{unique}-late"])
    async with static_bridge(own, stack, client, topic) as again:
        await eventually(lambda: started(client, later), within=30)
        await eventually(
            lambda: _equals(committed(stack, own.kafka, own.bridge.group_id, topic, partitions), 5),
            within=30,
        )
    assert again.counts == {"started": 1}


async def _equals(value: object, expected: int) -> bool:
    assert asyncio.iscoroutine(value)
    return await value == expected


async def test_a_group_with_a_member_refuses_a_static_commit_and_the_bridge_reads_on(
    settings: Settings,
    stack: Endpoints,
    client: Client,
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kafka takes a commit from outside a group only while the group has no members: with a
    group-mode member in it the bridge's commits are refused (an error, counted), its starts go
    on, and once the member leaves its commits are taken again."""
    topic = f"refused-{unique}"
    await ensure_topics(stack.kafka, settings.kafka, (topic,))
    own = tuned(settings, unique, assignment="static")
    partitions = settings.kafka.partitions
    member = make_consumer(stack.kafka, own.kafka, topic, group_id=own.bridge.group_id)
    await member.start()  # joined: it holds every partition of the group's own
    assert await members(stack, own.bridge.group_id) == 1
    refused = UNCOMMITTED_BATCHES._value.get()
    with caplog.at_level(logging.ERROR, logger="workers.bridge.bridge"):
        async with static_bridge(own, stack, client, topic):
            ids = await send_falls(stack, own, topic, [f"rf-{unique}"])
            await eventually(lambda: started(client, ids), within=30)
            await eventually(
                lambda: _at_least(UNCOMMITTED_BATCHES._value.get(), refused + 1), within=30
            )
            assert await committed(stack, own.kafka, own.bridge.group_id, topic, partitions) == 0
            await member.stop()  # leaves the group
            more = await send_falls(stack, own, topic, [f"rf-{unique}-2"])
            await eventually(lambda: started(client, more), within=30)
            await eventually(  # the second batch's partition, at least
                lambda: _positive(
                    committed(stack, own.kafka, own.bridge.group_id, topic, partitions)
                ),
                within=30,
            )
    assert any("refused this bridge's commit" in r.message for r in caplog.records)


async def _at_least(value: float, floor: float) -> bool:
    return value >= floor


async def _positive(value: object) -> bool:
    assert asyncio.iscoroutine(value)
    return await value > 0
