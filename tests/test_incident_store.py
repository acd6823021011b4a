"""The incident records' Redis writes on one Redis and on a real three-master Valkey Cluster:
the script that writes an incident's view, its open sets and its close marker touches keys of
one slot only, and a late, older version never overwrites a newer one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from redis.crc import key_slot
from temporalio.testing import ActivityEnvironment

from activities.incidents import IncidentActivities
from devstack.localstack.process import free_port
from riskflow.contracts.incidents import (
    IncidentEvent,
    IncidentGate,
    IncidentRecord,
    IncidentState,
    IncidentView,
)
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient
from riskflow.levels import RiskLevel
from riskflow.names import (
    INCIDENT_CHANGES,
    INCIDENT_INDEX,
    INCIDENT_OPEN_SEVERITY,
    camera_open_incidents_key,
    incident_closed_key,
    incident_key,
    site_open_incidents_key,
)

OPENED = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
async def incidents(store: RedisClient, stack: Endpoints) -> AsyncIterator[IncidentActivities]:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka)
    await producer.start()
    try:
        yield IncidentActivities(store, producer)
    finally:
        await producer.stop()


def _view(unique: str, state: IncidentState, version: int) -> IncidentView:
    closed_at = OPENED + timedelta(minutes=5) if state.closed else None
    return IncidentView(
        incident_id=f"inc-{unique}",
        workflow_id=f"incident-cam-{unique}-hazard",
        camera_id=f"cam-{unique}",
        site_id="plant-a",
        family="hazard",
        state=state,
        severity=RiskLevel.HIGH,
        opened_at=OPENED,
        updated_at=OPENED,
        closed_at=closed_at,
        version=version,
    )


def _record(view: IncidentView) -> IncidentRecord:
    event = IncidentEvent(
        event_id=f"{view.incident_id}:{view.version}",
        kind="resolved" if view.state.closed else "opened",
        incident_id=view.incident_id,
        camera_id=view.camera_id,
        site_id=view.site_id,
        state=view.state,
        severity=view.severity,
        at=view.updated_at,
    )
    return IncidentRecord(view=view, events=[event])


def test_every_incident_key_shares_one_slot() -> None:
    names = [
        incident_key("i"),
        site_open_incidents_key("s"),
        camera_open_incidents_key("c"),
        INCIDENT_INDEX,
        incident_closed_key("w"),
        INCIDENT_OPEN_SEVERITY,
        INCIDENT_CHANGES,
    ]
    assert len({key_slot(n.encode()) for n in names}) == 1


async def test_open_then_close_then_a_late_older_write(
    incidents: IncidentActivities, store: RedisClient, unique: str
) -> None:
    env = ActivityEnvironment()
    changes = int(await store.get(INCIDENT_CHANGES) or 0)  # the store is shared: relative
    opened = _view(unique, IncidentState.OPEN, 1)
    assert await env.run(incidents.record, _record(opened))
    assert await store.zscore(camera_open_incidents_key(opened.camera_id), opened.incident_id)
    closed = _view(unique, IncidentState.RESOLVED, 2)
    assert await env.run(incidents.record, _record(closed))
    assert not await env.run(incidents.record, _record(opened))  # late and older: ignored
    assert int(await store.get(INCIDENT_CHANGES)) == changes + 2  # applied writes only
    stored = IncidentView.model_validate_json(await store.get(incident_key(opened.incident_id)))
    assert stored.state == IncidentState.RESOLVED
    assert await store.zcard(site_open_incidents_key("plant-a")) == 0
    before = IncidentGate(workflow_id=opened.workflow_id, captured_at=OPENED)
    after = IncidentGate(workflow_id=opened.workflow_id, captured_at=OPENED + timedelta(hours=1))
    assert not (await env.run(incidents.gate, before)).admitted  # an old frame reopens nothing
    assert (await env.run(incidents.gate, after)).admitted


async def test_redis_unreachable_admits_the_frame(stack: Endpoints) -> None:
    """The gate that keeps a closed incident's redelivered frames out reads Redis; with Redis
    refusing connections it admits the frame (an alarm never waits for Redis)."""
    gone = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=2)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka)
    unreachable = IncidentActivities(gone, producer)
    try:
        gate = IncidentGate(workflow_id="incident-gone-hazard", captured_at=OPENED)
        assert (await ActivityEnvironment().run(unreachable.gate, gate)).admitted
    finally:
        await gone.aclose()
