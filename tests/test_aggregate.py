"""Aggregation's Redis writes on one Redis and on a real three-master Valkey Cluster (where
`camera:<id>:latest`, `alerts:<id>` and `camera:<id>:history` fall into different slots):
each step is idempotent on its own, and every per-camera key expires."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from redis.crc import key_slot
from temporalio.testing import ActivityEnvironment

from activities.aggregate import AggregateActivities
from riskflow.config.llm import AggregateSettings
from riskflow.contracts.assessment import Assessment
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient
from riskflow.levels import RiskLevel
from riskflow.names import (
    assessment_key,
    camera_alerts_key,
    camera_history_key,
    camera_latest_key,
    seen_key,
)


@pytest.fixture
async def activities(store: RedisClient, stack: Endpoints) -> AsyncIterator[AggregateActivities]:
    """The aggregate activity on `store`, publishing to the stack's real results topic."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka)
    await producer.start()
    try:
        yield AggregateActivities(store, producer, SETTINGS)
    finally:
        await producer.stop()


def assessment(camera: str, assessment_id: str) -> Assessment:
    now = datetime.now(UTC)
    return Assessment(
        assessment_id=assessment_id,
        camera_id=camera,
        situation="fall",
        status="assessed",
        captured_at=now,
        captured_ms=int(now.timestamp() * 1000),
        assessed_at=now,
        frame_id=1,
        risk_level=RiskLevel.CRITICAL,
        risk_score=90,
        summary="one down",
    )


SETTINGS = AggregateSettings(
    assessment_ttl_seconds=3600, camera_keys_ttl_seconds=7200, alerts_max_len=3, history_max_len=2
)


async def test_per_camera_keys_expire_after_their_last_write(
    store: RedisClient, activities: AggregateActivities
) -> None:
    await ActivityEnvironment().run(activities.aggregate, assessment("cam-7", "a-1"))
    alerts, history = camera_alerts_key("cam-7"), camera_history_key("cam-7")
    for key in (camera_latest_key("cam-7"), alerts, history):
        assert 0 < await store.ttl(key) <= 7200, key
    for key in (seen_key(alerts), seen_key(history), assessment_key("a-1")):
        assert 0 < await store.ttl(key) <= 3600, key  # the idempotency window


async def test_a_retry_after_a_partial_write_finishes_it_without_duplicates(
    store: RedisClient, activities: AggregateActivities
) -> None:
    """The first attempt wrote the marker and `latest`, then the worker died: the retry still
    pushes the alert and the history line, once."""
    first = assessment("cam-8", "a-8")
    await store.set(assessment_key("a-8"), first.model_dump_json())
    await store.set(camera_latest_key("cam-8"), first.model_dump_json())
    env = ActivityEnvironment()
    retried = await env.run(activities.aggregate, first)
    again = await env.run(activities.aggregate, first)
    assert retried.alerted and not again.alerted
    alerts = await store.lrange(camera_alerts_key("cam-8"), 0, -1)
    assert [json.loads(a)["assessment_id"] for a in alerts] == ["a-8"]
    assert len(await store.lrange(camera_history_key("cam-8"), 0, -1)) == 1


async def test_lists_stay_capped_and_ordered_newest_first(
    store: RedisClient, activities: AggregateActivities
) -> None:
    env = ActivityEnvironment()
    for i in range(5):
        await env.run(activities.aggregate, assessment("cam-9", f"a-{i}"))
        await env.run(activities.aggregate, assessment("cam-9", f"a-{i}"))  # each retried
    alerts = await store.lrange(camera_alerts_key("cam-9"), 0, -1)
    assert [json.loads(a)["assessment_id"] for a in alerts] == ["a-4", "a-3", "a-2"]
    assert len(await store.lrange(camera_history_key("cam-9"), 0, -1)) == 2
    assert await store.zcard(seen_key(camera_alerts_key("cam-9"))) == 5


@pytest.mark.parametrize("camera", ["1", "cam-1", "lobby.north_2", "A" * 64])
def test_each_guard_lives_in_the_slot_of_its_list(camera: str) -> None:
    for list_key in (camera_alerts_key(camera), camera_history_key(camera)):
        assert key_slot(seen_key(list_key).encode()) == key_slot(list_key.encode())
