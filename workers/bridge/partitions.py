"""Which partitions the bridge reads (`bridge.assignment`), and whether it reads any.

group: the consumer group assigns them; any number of bridges share a topic's partitions. It
relies on the broker evicting a member that died. Apache Kafka does when the member's session
times out; the local stack's default broker (noida-db) keeps a kill -9'd member as the group's
leader, and no member that joins after it is ever assigned a partition.

static: the bridge assigns itself every partition of the topic and commits its offsets to the
group without joining it (generation -1). A kill -9 leaves nothing behind: the next bridge
reads on from the offsets committed last. One bridge per group: two would each read every
partition. Kafka, and noida-db, take such a commit only while the group has no members; a
refused one is logged and counted, and the batch is read again by the next bridge (its starts
meet the workflows already started).

`PartitionMonitor` tells the metrics (and through them `riskflow status`) how many partitions
the bridge reads and how long it has read none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from riskflow.config.settings import Settings
from riskflow.infra.kafka import make_consumer
from riskflow.infra.metrics import (
    BRIDGE_ASSIGNED,
    BRIDGE_TOPIC_PARTITIONS,
    BRIDGE_UNASSIGNED_PERIODS,
    BRIDGE_UNASSIGNED_SECONDS,
    BRIDGE_UNASSIGNED_TOTAL,
)

logger = logging.getLogger(__name__)

Assignment = Literal["group", "static"]

STATIC_COMMIT_REFUSED = (
    "group %s refused this bridge's commit: it has members (a bridge with `bridge.assignment: "
    "group`, or one that died and the broker keeps), and Kafka takes a commit from outside a "
    "group only while it has none; the batch will be read again"
)


def assignment_of(settings: Settings) -> Assignment:
    """`bridge.assignment` with `auto` decided: static on the local stack's broker (one bridge
    under `riskflow up`, a broker that may keep a dead member), group on a configured one."""
    chosen = settings.bridge.assignment
    if chosen == "auto":
        return "static" if settings.kafka_bootstrap is None else "group"
    return chosen


def bridge_consumer(
    bootstrap: str, settings: Settings, topic: str
) -> tuple[AIOKafkaConsumer, StaticPartitions | None]:
    """The bridge's consumer of `topic`: subscribed (group), or with the `StaticPartitions`
    that assign it every partition (static; its metadata refreshed as often as they look)."""
    group = settings.bridge.group_id
    if assignment_of(settings) == "group":
        return make_consumer(bootstrap, settings.kafka, topic, group_id=group), None
    refresh_ms = round(settings.bridge.partitions_refresh_seconds * 1000)
    consumer = make_consumer(
        bootstrap, settings.kafka, group_id=group, metadata_max_age_ms=refresh_ms
    )
    return consumer, StaticPartitions(consumer, topic)


class Consumer(Protocol):
    """What this module needs of an AIOKafkaConsumer."""

    def partitions_for_topic(self, topic: str) -> set[int] | None: ...

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...


class StaticPartitions:
    """Every partition of one topic, assigned by the bridge itself (`assignment: static`)."""

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self._consumer = consumer
        self.topic = topic
        self._assigned: frozenset[int] = frozenset()

    def ensure(self) -> int:
        """Assign every partition the consumer's metadata knows: at once, and again when the
        topic gains some (the metadata is refreshed every `partitions_refresh_seconds`). Call
        it between batches: a new assignment reads each partition on from its committed
        offset. Returns how many are assigned (0 while the topic is unknown)."""
        known = frozenset(self._consumer.partitions_for_topic(self.topic) or ())
        if known and known != self._assigned:
            self._consumer.assign([TopicPartition(self.topic, p) for p in sorted(known)])
            logger.info(
                "reading every partition of %s (%d) without joining the group",
                self.topic,
                len(known),
            )
            self._assigned = known
        return len(self._assigned)


class AssignmentWatch:
    """How long a bridge has read no partition, on the clock each call is given (seconds).

    A period starts when the bridge holds none: at its start, until its first assignment,
    and whenever it loses them all later. The later ones are counted (`periods`, and their
    seconds in `total_seconds`); the first is only the current one while it lasts."""

    def __init__(self, now: float) -> None:
        self._since: float | None = now  # when the current period without partitions began
        self._had = False  # it has held a partition at some point
        self.periods = 0
        self._ended = 0.0  # seconds of the counted periods that ended

    def observe(self, held: int, now: float) -> Literal["lost", "gained"] | None:
        """Record how many partitions the bridge holds now; says when that changed."""
        if held and self._since is not None:
            if self._had:
                self._ended += now - self._since
            self._since, self._had = None, True
            return "gained"
        if not held and self._since is None:
            self._since = now
            self.periods += 1
            return "lost"
        return None

    def unassigned_seconds(self, now: float) -> float:
        """The current period's length (0 while it holds a partition)."""
        return 0.0 if self._since is None else now - self._since

    def total_seconds(self, now: float) -> float:
        """Seconds of the counted periods, the current one included."""
        current = self.unassigned_seconds(now) if self._had else 0.0
        return self._ended + current


class PartitionMonitor:
    """Samples the consumer's assignment into the metrics, and logs when the bridge stops
    reading partitions, has read none for `alarm_seconds` (an error: `riskflow status` shows
    it as the last error) and reads again."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        alarm_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._alarm = alarm_seconds
        self._clock = clock
        self._watch = AssignmentWatch(clock())
        self._alarmed = False
        self._published = 0.0

    def sample(self) -> None:
        now = self._clock()
        held = len(self._consumer.assignment())
        topic = len(self._consumer.partitions_for_topic(self._topic) or ())
        quiet = self._watch.unassigned_seconds(now)
        change = self._watch.observe(held, now)
        if change == "gained":
            logger.info("reading %d of %d partitions of %s", held, topic, self._topic)
            if self._alarmed:
                logger.info("partitions again after %.0f s without any", quiet)
            self._alarmed = False
        elif change == "lost":
            BRIDGE_UNASSIGNED_PERIODS.inc()
            logger.info("reading no partition of %s any more", self._topic)
        quiet = self._watch.unassigned_seconds(now)
        if not held and quiet >= self._alarm and not self._alarmed:
            self._alarmed = True
            logger.error(
                "no partitions: read none of the %d of %s for %.0f s; detections are not "
                "reaching Temporal (README: the local Kafka broker)",
                topic,
                self._topic,
                quiet,
            )
        total = self._watch.total_seconds(now)
        BRIDGE_UNASSIGNED_TOTAL.inc(max(0.0, total - self._published))
        self._published = max(total, self._published)
        BRIDGE_ASSIGNED.set(held)
        BRIDGE_TOPIC_PARTITIONS.set(topic)
        BRIDGE_UNASSIGNED_SECONDS.set(quiet)

    async def run(self, interval: float = 1.0) -> None:
        """Sample every `interval` seconds until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(interval)
