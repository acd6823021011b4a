"""The whole path on the local stack: Kafka -> bridge -> Temporal dev server -> worker ->
local DashScope -> Redis and the results topic."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from temporalio.client import Client, RetryConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from detection_edge.publisher import DetectionPublisher
from devstack.localstack.stack import LocalStack
from devstack.simulate import scene_event
from riskflow.config.bridge import BridgeSettings
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import ensure_topics, make_consumer, make_producer
from riskflow.infra.metrics import UNCOMMITTED_BATCHES
from riskflow.infra.redis import redis_client
from riskflow.names import (
    DEAD_LETTER_TOPIC,
    DETECTION_TOPIC,
    RESULTS_TOPIC,
    camera_alerts_key,
    camera_latest_key,
)
from tests.conftest import (
    cli_env,
    eventually,
    group_from_now,
    read_topic,
    run_command,
    running_worker,
)
from workers.bridge.bridge import Bridge, Outcome, run_bridge
from workers.common.significance import assess_significance


@dataclass
class Pipeline:
    settings: Settings
    producer: AIOKafkaProducer
    counts: dict[str, int]

    async def send(self, value: bytes, key: bytes = b"cam") -> None:
        await self.producer.send_and_wait(DETECTION_TOPIC, value, key=key)


@pytest.fixture(scope="module")
async def pipeline(settings: Settings, stack: Endpoints, client: Client) -> AsyncIterator[Pipeline]:
    """One worker and one bridge for the session, as the deployment runs them."""
    bridged = settings.model_copy(
        update={
            "bridge": BridgeSettings(
                mode="assessments", group_id="e2e-bridge", max_message_bytes=64 * 1024
            )
        }
    )
    await group_from_now(stack.kafka, settings.kafka, DETECTION_TOPIC, "e2e-bridge")
    stop = asyncio.Event()
    producer = make_producer(stack.kafka, settings.kafka)
    await producer.start()
    async with running_worker(client, bridged, stack, bridged.temporal.task_queue):
        task = asyncio.create_task(run_bridge(bridged, stop))
        try:
            yield Pipeline(bridged, producer, counts={})
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await producer.stop()


async def test_event_ends_as_one_result_in_redis_and_on_the_topic(
    pipeline: Pipeline, stack: Endpoints, unique: str
) -> None:
    event = scene_event(f"e2e-{unique}", 1, datetime.now(UTC), people=2, falls=1)
    situation = assess_significance(event, pipeline.settings.significance)
    assert situation is not None
    redis = redis_client(stack.redis)
    try:
        await pipeline.send(event.model_dump_json().encode(), event.camera_id.encode())

        async def assessed() -> bool:
            return await redis.get(camera_latest_key(event.camera_id)) is not None

        await eventually(assessed)
        latest = json.loads(await redis.get(camera_latest_key(event.camera_id)))
    finally:
        await redis.aclose()
    assert latest["assessment_id"] == situation.workflow_id and latest["risk_level"] == "high"
    published = await read_topic(
        stack.kafka, RESULTS_TOPIC, lambda d: d.get("camera_id") == event.camera_id, 1
    )
    # At least once on the topic (a retried aggregate publishes again): consumers dedupe by id.
    assert {p["assessment_id"] for p in published} == {situation.workflow_id}


async def test_redelivered_message_starts_one_workflow_and_one_alert(
    pipeline: Pipeline, stack: Endpoints, client: Client, unique: str
) -> None:
    event = scene_event(f"dup-{unique}", 3, datetime.now(UTC), people=1, falls=1)
    raw = event.model_dump_json().encode()
    for _ in range(3):
        await pipeline.send(raw, event.camera_id.encode())
    situation = assess_significance(event, pipeline.settings.significance)
    assert situation is not None
    query = f'WorkflowId = "{situation.workflow_id}"'

    async def started() -> bool:
        return [w async for w in client.list_workflows(query)] != []

    await eventually(started)
    handle = client.get_workflow_handle(situation.workflow_id, result_type=Assessment)
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.status == "assessed"

    async def all_three_handled() -> bool:  # the bridge has judged every copy
        outcomes = ("started", "duplicate", "insignificant", "dead_lettered")
        labels = [{"camera": event.camera_id, "outcome": o} for o in outcomes]
        seen = [REGISTRY.get_sample_value("riskflow_bridge_messages_total", x) for x in labels]
        return sum(n or 0 for n in seen) >= 3

    await eventually(all_three_handled)
    runs = [w async for w in client.list_workflows(query)]
    assert len(runs) == 1
    redis = redis_client(stack.redis)
    try:
        assert await redis.llen(camera_alerts_key(event.camera_id)) == 1
    finally:
        await redis.aclose()


async def test_malformed_messages_are_dead_lettered_and_the_bridge_lives_on(
    pipeline: Pipeline, stack: Endpoints, unique: str
) -> None:
    bad = {
        "invalid_json": f'{{"camera_id": "{unique}", nope'.encode(),
        "schema": json.dumps({"camera_id": unique, "frame_id": -1}).encode(),
        "oversize": b'{"pad": "' + unique.encode() + b"x" * (70 * 1024) + b'"}',
    }
    for value in bad.values():
        await pipeline.send(value, key=unique.encode())
    dead = await read_topic(
        stack.kafka,
        DEAD_LETTER_TOPIC,
        lambda d: unique.encode() in d.get("_raw", b"") or unique in json.dumps(d, default=str),
        3,
    )
    reasons = sorted(d["_headers"]["riskflow-reason"] for d in dead)
    assert reasons == sorted(bad)
    for d in dead:
        assert d["_headers"]["riskflow-error"]
        assert d["_headers"]["riskflow-source"].startswith(f"{DETECTION_TOPIC}/")
    schema = next(d for d in dead if d["_headers"]["riskflow-reason"] == "schema")
    assert "frame_id" in schema["_headers"]["riskflow-error"]
    # Nothing is lost: the original bytes are kept.
    assert any(d.get("_raw") == bad["invalid_json"] for d in dead)
    # Still alive: a good event after the bad ones is assessed.
    await test_event_ends_as_one_result_in_redis_and_on_the_topic(pipeline, stack, unique + "b")


async def test_offsets_are_committed_only_after_the_start_is_acknowledged(
    settings: Settings, stack: Endpoints, client: Client, unique: str
) -> None:
    group = f"commit-{unique}"
    camera = f"commit-{unique}"
    producer = make_producer(stack.kafka, settings.kafka)
    await producer.start()
    event = scene_event(camera, 1, datetime.now(UTC), people=1, falls=1)
    meta = await producer.send_and_wait(
        DETECTION_TOPIC, event.model_dump_json().encode(), key=camera.encode()
    )
    await producer.stop()
    tp = TopicPartition(DETECTION_TOPIC, meta.partition)
    # Temporal cannot be reached (nothing listens on its port; UNAVAILABLE): the bridge keeps
    # retrying the start and commits nothing. (An unknown namespace is refused for good: see
    # test_bridge_faults.)
    dead = await Client.connect(
        f"127.0.0.1:{closed_port()}",
        lazy=True,
        retry_config=RetryConfig(max_retries=1),
        data_converter=pydantic_data_converter,
    )
    tuned = settings.model_copy(
        update={"bridge": BridgeSettings(mode="assessments", group_id=group)}
    )

    async def committed() -> int | None:
        consumer = make_consumer(stack.kafka, settings.kafka, group_id=group)
        await consumer.start()
        try:
            return await consumer.committed(tp)
        finally:
            await consumer.stop()

    consumer = make_consumer(stack.kafka, settings.kafka, DETECTION_TOPIC, group_id=group)
    dlq = AIOKafkaProducer(bootstrap_servers=stack.kafka)
    outage = Bridge(consumer, dlq, dead, tuned)
    await consumer.start()
    await dlq.start()
    runner = asyncio.create_task(outage.run())
    await asyncio.sleep(4)
    outage.stop()
    await asyncio.wait_for(runner, 40)
    await consumer.stop()
    await dlq.stop()
    assert outage.counts["started"] == 0
    assert (await committed() or 0) <= meta.offset
    # Temporal is back: the same group picks the message up again and starts its workflow.
    stop = asyncio.Event()
    task = asyncio.create_task(run_bridge(tuned, stop))
    situation = assess_significance(event, settings.significance)
    assert situation is not None

    async def started() -> bool:
        return [
            w async for w in client.list_workflows(f'WorkflowId = "{situation.workflow_id}"')
        ] != []

    try:
        await eventually(started, within=30)
        await eventually(lambda: _committed_past(committed, meta.offset), within=30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_refused_commit_is_read_again_and_the_bridge_lives_on(
    settings: Settings, strict_group_kafka: LocalStack, client: Client, unique: str
) -> None:
    """The group moves on while a batch is in hand (here: the batch outlasts
    max_poll_interval_ms, so the consumer leaves): the commit is refused, the bridge keeps
    consuming, reads the batch again and its start meets the workflow already started. On a
    broker that refuses a stale member's commit, as Apache Kafka does (noida-db accepts it)."""
    bootstrap = strict_group_kafka.endpoints.kafka
    camera = topic = f"rebalance-{unique}"  # a topic of its own: only this event on it
    await ensure_topics(bootstrap, settings.kafka, (topic,))
    producer = make_producer(bootstrap, settings.kafka)
    await producer.start()
    event = scene_event(camera, 1, datetime.now(UTC), people=1, falls=1)
    await producer.send_and_wait(topic, event.model_dump_json().encode(), key=camera.encode())
    tuned = settings.model_copy(
        update={
            "bridge": BridgeSettings(mode="assessments", group_id=f"rebalance-{unique}"),
            "temporal": settings.temporal.model_copy(update={"task_queue": f"idle-{unique}"}),
        }
    )
    consumer = make_consumer(
        bootstrap,
        settings.kafka,
        topic,
        group_id=tuned.bridge.group_id,
        max_poll_interval_ms=1500,
    )
    await consumer.start()
    bridge = Bridge(consumer, producer, client, tuned)
    handle, first = bridge.handle, [True]

    async def slow_first(record: ConsumerRecord) -> Outcome:
        outcome = await handle(record)
        if first:
            first.clear()
            await asyncio.sleep(4)  # past max_poll_interval_ms: the consumer leaves its group
        return outcome

    bridge.handle = slow_first  # type: ignore[method-assign]
    refused = UNCOMMITTED_BATCHES._value.get()
    runner = asyncio.create_task(bridge.run())

    async def read_again() -> bool:
        return bridge.counts["duplicate"] >= 1

    try:
        await eventually(read_again, within=40)
    finally:
        bridge.stop()
        await asyncio.wait_for(runner, 30)
        await consumer.stop()
        await producer.stop()
    assert bridge.counts == {"started": 1, "duplicate": 1}
    assert UNCOMMITTED_BATCHES._value.get() == refused + 1


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _committed_past(committed: object, offset: int) -> bool:
    assert callable(committed)
    value = await committed()
    return value is not None and value > offset


async def test_cli_pipeline_test_and_temporal_queries(
    pipeline: Pipeline, stack: Endpoints, client: Client
) -> None:
    env = cli_env(pipeline.settings)
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "pipeline",
        "test",
        "--mode",
        "e2e",
        "--num-messages",
        "6",
        "--cameras",
        "2",
        "--duration",
        "60",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(run.communicate(), 90)
    text = out.decode()
    assert run.returncode == 0, text
    assert "assessments arrived" in text and "missing" not in text
    queue = pipeline.settings.temporal.task_queue  # served by this module's worker
    listing = client.list_workflows(
        f'WorkflowType = "RiskAssessmentWorkflow" AND TaskQueue = "{queue}"'
    )
    workflows = [w async for w in listing]
    workflow = workflows[0]
    temporal = sys.executable.rsplit("/", 1)[0] + "/temporal"
    # The worker runs on this event loop: the CLI must not block it while it answers queries.
    query = await run_command(
        temporal,
        "workflow",
        "query",
        "--address",
        stack.temporal,
        "--workflow-id",
        workflow.id,
        "--type",
        "status",
        "--output",
        "json",
    )
    assert '"stage"' in query and workflow.id in query
    listed = await run_command(
        temporal, "workflow", "list", "--address", stack.temporal, "--limit", "5"
    )
    assert "RiskAssessmentWorkflow" in listed


async def test_one_trace_from_edge_publish_to_the_activities(
    pipeline: Pipeline, stack: Endpoints, tracing: InMemorySpanExporter, unique: str
) -> None:
    publisher = DetectionPublisher(pipeline.producer, max_queue=10)
    sender = asyncio.create_task(publisher.run())
    event = scene_event(f"trace-{unique}", 1, datetime.now(UTC), people=1, falls=1)
    publisher.offer(event)
    expected = {
        "edge.publish",
        "bridge.handle",
        "StartWorkflow:RiskAssessmentWorkflow",
        "RunWorkflow:RiskAssessmentWorkflow",
        "RunActivity:build_task",
        "RunActivity:acquire_lease",
        "RunActivity:call_llm",
        "RunActivity:aggregate",
        "redis.aggregate",
        "kafka.publish_result",
    }

    def trace_names() -> set[str]:
        spans = tracing.get_finished_spans()
        edge = [
            s
            for s in spans
            if s.name == "edge.publish"
            and s.attributes
            and s.attributes["camera"] == event.camera_id
        ]
        if len(edge) != 1 or edge[0].context is None:
            return set()
        trace_id = edge[0].context.trace_id
        return {s.name for s in spans if s.context is not None and s.context.trace_id == trace_id}

    async def traced_through() -> bool:  # spans end when their step ends: wait for the last
        return expected <= trace_names()

    try:
        await eventually(traced_through, within=30)
    finally:
        sender.cancel()
    assert expected <= trace_names()


async def test_cli_keys_verify_and_status_never_print_secrets(pipeline: Pipeline) -> None:
    env = cli_env(pipeline.settings)
    for args, expected in ((["keys", "verify"], "valid"), (["keys", "status"], "key_2")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            *args,
            env={**env, "COLUMNS": "160"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        text = out.decode()
        assert proc.returncode == 0, text
        assert "key_1" in text and expected in text
        assert "sk-local-demo" not in text
