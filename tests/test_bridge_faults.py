"""Nothing the bridge reads can stop it, on the local stack: dead letters the producer cannot
send as they are, partitions moving mid-batch, Temporal answers no retry can change, camera
clocks, snapshot URLs and camera ids without bound. Each bridge reads a topic of its own."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from temporalio.client import Client

from devstack.simulate import scene_event
from riskflow.config.services import MetricsSettings
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment
from riskflow.contracts.events import DetectionEvent, SnapshotRef
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import ensure_topics, make_consumer, make_producer
from riskflow.infra.metrics import OTHER_CAMERA, UNCOMMITTED_BATCHES
from riskflow.names import DEAD_LETTER_TOPIC, camera_latest_key
from tests.conftest import eventually, read_topic, running_worker
from workers.bridge.bridge import Bridge, Outcome
from workers.common.client import connect
from workers.common.significance import assess_significance


def tuned(settings: Settings, task_queue: str, **bridge: Any) -> Settings:
    return settings.model_copy(
        update={
            "bridge": settings.bridge.model_copy(update=bridge),
            "temporal": settings.temporal.model_copy(update={"task_queue": task_queue}),
        }
    )


async def new_topic(stack: Endpoints, settings: Settings, name: str) -> str:
    await ensure_topics(stack.kafka, settings.kafka, (name,))
    return name


@contextlib.asynccontextmanager
async def sender(stack: Endpoints, settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(stack.kafka, settings.kafka, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def bridge_on(
    topic: str,
    settings: Settings,
    client: Client,
    stack: Endpoints,
    group: str,
    **producer_options: Any,
) -> AsyncIterator[Bridge]:
    """A bridge reading `topic` as `group`, running until the block ends; its failure (if it
    stopped on its own) is raised there."""
    consumer = make_consumer(stack.kafka, settings.kafka, topic, group_id=group)
    producer = make_producer(stack.kafka, settings.kafka, **producer_options)
    await consumer.start()
    await producer.start()
    bridge = Bridge(consumer, producer, client, settings)
    runner = asyncio.create_task(bridge.run())
    bridge.runner = runner  # type: ignore[attr-defined]
    try:
        yield bridge
    finally:
        bridge.stop()
        try:
            await asyncio.wait_for(runner, 40)
        finally:
            await consumer.stop()
            await producer.stop()


async def handled(bridge: Bridge, count: int, within: float = 30.0) -> None:
    """Wait until `bridge` decided `count` messages; a bridge that died fails at once."""
    runner: asyncio.Task[None] = bridge.runner  # type: ignore[attr-defined]

    async def done() -> bool:
        if runner.done():
            runner.result()  # raises what ended it
            raise AssertionError("the bridge stopped on its own")
        return sum(bridge.counts.values()) >= count

    await eventually(done, within=within)


async def dead_letters(stack: Endpoints, topic: str, count: int) -> list[dict[str, Any]]:
    return await read_topic(
        stack.kafka,
        DEAD_LETTER_TOPIC,
        lambda d: d["_headers"].get("riskflow-source", "").startswith(f"{topic}/"),
        count,
        within=30,
    )


def raw(event: DetectionEvent) -> bytes:
    return event.model_dump_json().encode()


async def started(client: Client, workflow_id: str) -> bool:
    return [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')] != []


def workflow_id(event: DetectionEvent, settings: Settings) -> str:
    situation = assess_significance(event, settings.significance)
    assert situation is not None
    return situation.workflow_id


# -- dead letters that cannot be sent as they are ------------------------------------------


async def test_dead_letters_over_the_producer_limit_go_as_envelopes_and_the_bridge_goes_on(
    settings: Settings, stack: Endpoints, client: Client, unique: str
) -> None:
    topic = await new_topic(stack, settings, f"envelope-{unique}")
    bridged = tuned(settings, f"idle-{unique}", max_message_bytes=1024 * 1024)
    big_value = b'{"camera_id": "' + unique.encode() + b'", ' + b"x" * (40 * 1024)
    big_key = b"k" * (40 * 1024)  # a key counts against the limit too
    event = scene_event(f"env-{unique}", 1, datetime.now(UTC), people=1, falls=1)
    async with sender(stack, settings) as producer:
        first = await producer.send_and_wait(topic, big_value, key=b"cam", partition=0)
        await producer.send_and_wait(topic, b'{"frame_id": -1}', key=big_key, partition=0)
        await producer.send_and_wait(topic, raw(event), key=b"cam", partition=0)
    async with bridge_on(
        topic, bridged, client, stack, f"g-{unique}", max_request_size=16 * 1024
    ) as bridge:
        await handled(bridge, 3)
    assert bridge.counts == {"dead_lettered": 2, "started": 1}
    assert await started(client, workflow_id(event, bridged))
    dead = await dead_letters(stack, topic, 2)
    assert len(dead) == 2
    for letter in dead:
        assert letter["_headers"]["riskflow-envelope"] == "1"
        assert len(letter["_value"]) < 8 * 1024
    by_reason = {d["_headers"]["riskflow-reason"]: d for d in dead}
    envelope = by_reason["invalid_json"]
    assert envelope["size"] == len(big_value)
    assert envelope["sha256"] == hashlib.sha256(big_value).hexdigest()
    assert envelope["source"]["topic"] == topic
    assert envelope["source"]["offset"] == first.offset
    assert base64.b64decode(envelope["prefix_base64"]) == big_value[:1024]
    assert "MessageSizeTooLarge" in envelope["cause"]
    assert by_reason["schema"]["size"] == len(b'{"frame_id": -1}')


class TimingOut:
    """A real producer in front of which chosen values time out a number of times first, as
    sends do when the broker does not answer within `request_timeout_ms`."""

    def __init__(self, real: AIOKafkaProducer, timeouts: dict[bytes, int]) -> None:
        self._real = real
        self.timeouts = timeouts

    async def send_and_wait(self, topic: str, value: Any = None, **options: Any) -> object:
        if self.timeouts.get(value, 0) > 0:
            self.timeouts[value] -= 1
            raise KafkaTimeoutError()
        return await self._real.send_and_wait(topic, value=value, **options)


async def test_dead_letter_sends_that_time_out_are_retried_then_enveloped(
    settings: Settings, stack: Endpoints, client: Client, unique: str
) -> None:
    topic = await new_topic(stack, settings, f"timeout-{unique}")
    bridged = tuned(settings, f"idle-{unique}")
    twice = f'{{"late": "{unique}"'.encode()  # times out twice, then gets through
    always = f'{{"never": "{unique}"'.encode()  # times out on every attempt
    event = scene_event(f"to-{unique}", 1, datetime.now(UTC), people=1, falls=1)
    async with sender(stack, settings) as producer:
        for value in (twice, always, raw(event)):
            await producer.send_and_wait(topic, value, key=b"cam", partition=0)
    attempts = bridged.bridge.dead_letter_send_attempts
    consumer = make_consumer(stack.kafka, settings.kafka, topic, group_id=f"g-{unique}")
    async with sender(stack, settings) as real:
        flaky = TimingOut(real, {twice: 2, always: attempts})
        await consumer.start()
        bridge = Bridge(consumer, flaky, client, bridged)  # type: ignore[arg-type]
        bridge.runner = asyncio.create_task(bridge.run())  # type: ignore[attr-defined]
        try:
            await handled(bridge, 3)
        finally:
            bridge.stop()
            await asyncio.wait_for(bridge.runner, 40)  # type: ignore[attr-defined]
            await consumer.stop()
    assert bridge.counts == {"dead_lettered": 2, "started": 1}
    assert flaky.timeouts == {twice: 0, always: 0}
    dead = await dead_letters(stack, topic, 2)
    as_is = [d for d in dead if "riskflow-envelope" not in d["_headers"]]
    enveloped = [d for d in dead if d["_headers"].get("riskflow-envelope") == "1"]
    assert [d["_value"] for d in as_is] == [twice]
    assert [d["sha256"] for d in enveloped] == [hashlib.sha256(always).hexdigest()]
    assert enveloped[0]["cause"].startswith("KafkaTimeoutError")


# -- partitions moving mid-batch -----------------------------------------------------------


async def test_partitions_moving_to_new_members_mid_batch_do_not_stop_any_bridge(
    settings: Settings, stack: Endpoints, client: Client, unique: str
) -> None:
    """Bridge A holds a batch from all three partitions while B and C join its group and take
    two of them: A's commit of partitions it no longer owns must not end it; B and C read
    those partitions again and their starts meet A's workflows. Every event starts once."""
    topic = await new_topic(stack, settings, f"moving-{unique}")
    group = f"moving-{unique}"
    bridged = tuned(settings, f"idle-{unique}")
    events = [
        scene_event(f"mv{p}-{unique}", 1, datetime.now(UTC), people=1, falls=1) for p in range(3)
    ]
    async with sender(stack, settings) as producer:
        for partition, event in enumerate(events):
            await producer.send_and_wait(topic, raw(event), key=b"k", partition=partition)
    refused = UNCOMMITTED_BATCHES._value.get()
    async with contextlib.AsyncExitStack() as members:
        a = await members.enter_async_context(bridge_on(topic, bridged, client, stack, group))
        later: list[Bridge] = []
        handle, first = a.handle, [True]

        async def hold_first(record: ConsumerRecord) -> Outcome:
            outcome = await handle(record)
            if first:
                first.clear()
                for _ in range(2):  # B and C join while A holds its batch
                    later.append(
                        await members.enter_async_context(
                            bridge_on(topic, bridged, client, stack, group)
                        )
                    )

                async def moved() -> bool:
                    return len(a._consumer.assignment()) == 1 and all(
                        len(b._consumer.assignment()) == 1 for b in later
                    )

                await eventually(moved, within=40)
            return outcome

        a.handle = hold_first  # type: ignore[method-assign]

        async def settled() -> bool:
            everyone = [a, *later]
            for bridge in everyone:
                runner: asyncio.Task[None] = bridge.runner  # type: ignore[attr-defined]
                if runner.done():
                    runner.result()
                    raise AssertionError("a bridge stopped on its own")
            counts = [b.counts for b in everyone]
            moved_read_again = sum(c["duplicate"] for c in counts[1:]) >= 2
            return len(later) == 2 and moved_read_again

        await eventually(settled, within=60)
    everyone = [a, *later]
    assert sum(b.counts["started"] for b in everyone) == 3
    assert a.counts["started"] == 3
    # The two moved partitions were read again (more often if they moved more than once).
    assert sum(b.counts["duplicate"] for b in later) >= 2
    assert UNCOMMITTED_BATCHES._value.get() >= refused + 1
    for event in events:
        assert await started(client, workflow_id(event, bridged))


# -- Temporal answers that no retry changes --------------------------------------------------


async def test_starts_temporal_refuses_for_good_are_dead_lettered_with_the_reason(
    settings: Settings, stack: Endpoints, client: Client, unique: str
) -> None:
    topic = await new_topic(stack, settings, f"refused-{unique}")
    event = scene_event(f"ref-{unique}", 1, datetime.now(UTC), people=1, falls=1)
    async with sender(stack, settings) as producer:
        for _ in range(2):
            await producer.send_and_wait(topic, raw(event), key=b"cam", partition=0)
    missing = await connect(stack.temporal, f"missing-{unique}")  # namespace not found
    cases = [
        (missing, tuned(settings, f"idle-{unique}"), "NOT_FOUND"),
        (client, tuned(settings, "q" * 2000), "INVALID_ARGUMENT"),  # task queue name too long
    ]
    for n, (temporal, bridged, status) in enumerate(cases):
        async with bridge_on(topic, bridged, temporal, stack, f"g{n}-{unique}") as bridge:
            await handled(bridge, 2)
        assert bridge.counts == {"dead_lettered": 2}, status
    dead = await dead_letters(stack, topic, 4)
    assert [d["_headers"]["riskflow-reason"] for d in dead] == ["start_refused"] * 4
    statuses = sorted(d["_headers"]["riskflow-error"].split(":")[0] for d in dead)
    assert statuses == ["INVALID_ARGUMENT"] * 2 + ["NOT_FOUND"] * 2
    assert all(d["_value"] == raw(event) for d in dead)  # the original bytes


# -- clocks --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def assessing(settings: Settings, stack: Endpoints, client: Client) -> AsyncIterator[str]:
    """A worker on a task queue of its own; yields the queue."""
    queue = "faults-assess"
    async with running_worker(client, settings, stack, queue):
        yield queue


async def latest(stack: Endpoints, camera: str) -> dict[str, Any] | None:
    redis = Redis.from_url(stack.redis)
    try:
        value = await redis.get(camera_latest_key(camera))
    finally:
        await redis.aclose()
    return json.loads(value) if value else None


async def test_a_future_stamped_event_is_dead_lettered_and_does_not_freeze_latest(
    settings: Settings, stack: Endpoints, client: Client, assessing: str, unique: str
) -> None:
    topic = await new_topic(stack, settings, f"future-{unique}")
    camera = f"fut-{unique}"
    now = datetime.now(UTC)
    future = scene_event(camera, 1, now + timedelta(hours=1), people=1, falls=1)
    real = scene_event(camera, 2, now, people=2, falls=1)
    bridged = tuned(settings, assessing)
    async with sender(stack, settings) as producer:
        for event in (future, real):
            await producer.send_and_wait(topic, raw(event), key=camera.encode(), partition=0)
    async with bridge_on(topic, bridged, client, stack, f"g-{unique}") as bridge:
        await handled(bridge, 2)
        handle = client.get_workflow_handle(workflow_id(real, bridged), result_type=Assessment)
        assert (await asyncio.wait_for(handle.result(), 60)).status == "assessed"
    assert bridge.counts == {"dead_lettered": 1, "started": 1}
    [dead] = await dead_letters(stack, topic, 1)
    assert dead["_headers"]["riskflow-reason"] == "clock_skew"
    assert dead["_value"] == raw(future)
    now_latest = await latest(stack, camera)
    assert now_latest is not None and now_latest["assessment_id"] == workflow_id(real, bridged)
    # A later real event moves `latest` on: nothing from the future holds it.
    after = scene_event(camera, 3, now + timedelta(seconds=40), people=1, falls=0)
    async with sender(stack, settings) as producer:
        await producer.send_and_wait(topic, raw(after), key=camera.encode(), partition=0)
    async with bridge_on(topic, bridged, client, stack, f"g-{unique}") as bridge:
        await handled(bridge, 1)

    async def moved_on() -> bool:
        value = await latest(stack, camera)
        return value is not None and value["frame_id"] == 3

    await eventually(moved_on, within=60)


async def test_clamped_future_stamps_keep_latest_moving(
    settings: Settings, stack: Endpoints, client: Client, assessing: str, unique: str
) -> None:
    topic = await new_topic(stack, settings, f"clamp-{unique}")
    camera = f"clamp-{unique}"
    now = datetime.now(UTC)
    future = scene_event(camera, 1, now + timedelta(days=2), people=1, falls=1)
    bridged = tuned(settings, assessing, future_skew_action="clamp", max_future_skew_seconds=60)
    async with sender(stack, settings) as producer:
        await producer.send_and_wait(topic, raw(future), key=camera.encode(), partition=0)
    async with bridge_on(topic, bridged, client, stack, f"g-{unique}") as bridge:
        await handled(bridge, 1)
    assert bridge.counts == {"started": 1}

    async def assessed() -> bool:
        value = await latest(stack, camera)
        return value is not None and value["frame_id"] == 1

    await eventually(assessed, within=60)
    clamped = await latest(stack, camera)
    assert clamped is not None
    assert datetime.fromisoformat(clamped["captured_at"]) < now + timedelta(minutes=10)
    later = scene_event(camera, 2, datetime.now(UTC) + timedelta(seconds=1), people=1, falls=0)
    async with sender(stack, settings) as producer:
        await producer.send_and_wait(topic, raw(later), key=camera.encode(), partition=0)
    async with bridge_on(topic, bridged, client, stack, f"g-{unique}") as bridge:
        await handled(bridge, 1)

    async def moved_on() -> bool:
        value = await latest(stack, camera)
        return value is not None and value["frame_id"] == 2

    await eventually(moved_on, within=60)


async def test_a_replayed_week_old_topic_is_dropped_as_stale_and_counted(
    settings: Settings, stack: Endpoints, client: Client, unique: str
) -> None:
    topic = await new_topic(stack, settings, f"stale-{unique}")
    camera = f"stale-{unique}"
    week_ago = datetime.now(UTC) - timedelta(days=7)
    old = [
        scene_event(camera, n, week_ago + timedelta(seconds=n), people=1, falls=1) for n in range(3)
    ]
    fresh = scene_event(camera, 9, datetime.now(UTC), people=1, falls=1)
    bridged = tuned(settings, f"idle-{unique}", max_event_age_seconds=3600)
    async with sender(stack, settings) as producer:
        for event in [*old, fresh]:
            await producer.send_and_wait(topic, raw(event), key=camera.encode(), partition=0)
    before = REGISTRY.get_sample_value(
        "riskflow_bridge_messages_total", {"camera": camera, "outcome": "stale"}
    )
    async with bridge_on(topic, bridged, client, stack, f"g-{unique}") as bridge:
        await handled(bridge, 4)
    assert before is None
    assert bridge.counts == {"stale": 3, "started": 1}
    assert (
        REGISTRY.get_sample_value(
            "riskflow_bridge_messages_total", {"camera": camera, "outcome": "stale"}
        )
        == 3
    )
    assert not await started(client, workflow_id(old[0], bridged))
    assert await started(client, workflow_id(fresh, bridged))


# -- snapshot URLs -------------------------------------------------------------------------


async def test_snapshot_urls_that_could_name_local_files_are_dead_lettered(
    settings: Settings, stack: Endpoints, client: Client, unique: str
) -> None:
    topic = await new_topic(stack, settings, f"urls-{unique}")
    bridged = tuned(settings, f"idle-{unique}", snapshot_url_hosts=["cdn.example.com"])
    unsafe = [
        "/app/config/api_keys.yaml",
        "file:///app/config/api_keys.yaml",
        "ftp://cdn.example.com/a.jpg",
        "https://cdn.example.com@evil.example.net/a.jpg",
        "https://evil.example.net/a.jpg",
    ]
    now = datetime.now(UTC)
    events = [
        scene_event(f"url{n}-{unique}", 1, now, people=1, falls=1).model_copy(
            update={"snapshot": SnapshotRef(store="url", ref=ref)}
        )
        for n, ref in enumerate([*unsafe, "https://cdn.example.com/ok.jpg"])
    ]
    async with sender(stack, settings) as producer:
        for event in events:
            await producer.send_and_wait(topic, raw(event), key=b"cam", partition=0)
    async with bridge_on(topic, bridged, client, stack, f"g-{unique}") as bridge:
        await handled(bridge, len(events))
    assert bridge.counts == {"dead_lettered": len(unsafe), "started": 1}
    dead = await dead_letters(stack, topic, len(unsafe))
    assert {d["_headers"]["riskflow-reason"] for d in dead} == {"unsafe_url"}
    assert sorted(d["snapshot"]["ref"] for d in dead) == sorted(unsafe)
    assert await started(client, workflow_id(events[-1], bridged))


# -- camera labels -------------------------------------------------------------------------


async def test_new_camera_ids_beyond_the_cap_share_one_label(
    settings: Settings, stack: Endpoints, client: Client, unique: str
) -> None:
    topic = await new_topic(stack, settings, f"labels-{unique}")
    bridged = tuned(settings, f"idle-{unique}").model_copy(
        update={"metrics": MetricsSettings(enabled=False, max_camera_labels=2)}
    )
    cameras = [f"lbl{n}-{unique}" for n in range(5)]
    other = {"camera": OTHER_CAMERA, "outcome": "insignificant"}
    before = REGISTRY.get_sample_value("riskflow_bridge_messages_total", other) or 0
    async with sender(stack, settings) as producer:
        for camera in cameras:
            event = scene_event(camera, 1, datetime.now(UTC), people=0, falls=0)
            await producer.send_and_wait(topic, raw(event), key=camera.encode(), partition=0)
    async with bridge_on(topic, bridged, client, stack, f"g-{unique}") as bridge:
        await handled(bridge, len(cameras))
    labelled = [
        c
        for c in cameras
        if REGISTRY.get_sample_value(
            "riskflow_bridge_messages_total", {"camera": c, "outcome": "insignificant"}
        )
        is not None
    ]
    assert labelled == cameras[:2]
    assert REGISTRY.get_sample_value("riskflow_bridge_messages_total", other) == before + 3
