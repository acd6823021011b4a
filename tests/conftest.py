"""Real servers, started once per session on free loopback ports: the local stack itself
(Temporal dev server, the default Kafka broker (noida-db), Valkey, the local DashScope server)
and Temporal's time-skipping test server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import TopicPartition
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack.localstack.brokers import broker_of
from devstack.localstack.process import on_free_ports
from devstack.localstack.services import venv_binary
from devstack.localstack.stack import LocalStack
from riskflow.config.channels import NotificationSettings
from riskflow.config.loader import load_settings
from riskflow.config.services import KafkaSettings, LocalStackSettings, MetricsSettings
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import Consumer, ensure_topics, make_consumer
from riskflow.infra.redis import RedisClient, redis_client
from tests.redis_cluster import valkey_cluster
from workers.common.client import connect
from workers.worker.worker import WorkerDeps, build_worker, worker_deps

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"


def local_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings for a stack of our own on free ports (never the developer's default ports)."""
    local = overrides.pop("local", None) or on_free_ports(state_dir)
    assert isinstance(local, LocalStackSettings)
    kafka = group_timeouts(local)
    overrides.setdefault("metrics", MetricsSettings(enabled=False))  # in-process: no servers
    settings = load_settings(CONFIG, local=local, kafka=kafka, **overrides)
    if "bridge" not in overrides:  # the suites of the assessment path; incidents opt in
        bridge = settings.bridge.model_copy(update={"mode": "assessments"})
        settings = settings.model_copy(update={"bridge": bridge})
    # Key cooldowns run on Redis' clock, not the workflow's: keep them short where tests
    # skip workflow time, so a skipped timer does not spin against a cooling key.
    scheduler = settings.keys.scheduler.model_copy(update={"error_cooldown_seconds": 0.05})
    keys = settings.keys.model_copy(update={"scheduler": scheduler})
    return settings.model_copy(update={"keys": keys})


def group_timeouts(local: LocalStackSettings) -> KafkaSettings:
    """Consumer-group timeouts as short as the local broker accepts (tansu: 2 s), so
    a member that stops is replaced quickly."""
    session_ms = broker_of(local).min_session_timeout_ms
    return KafkaSettings(session_timeout_ms=session_ms, heartbeat_interval_ms=session_ms // 4)


SPANS = InMemorySpanExporter()


@pytest.fixture(scope="session", autouse=True)
def tracing() -> InMemorySpanExporter:
    """Every span made in this process during the session, for the tracing tests."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(provider)
    return SPANS


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return local_settings(tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="session")
async def stack(settings: Settings) -> AsyncIterator[Endpoints]:
    local = LocalStack(settings)
    try:
        await local.up()
        await ensure_topics(local.endpoints.kafka, settings.kafka)
        yield local.endpoints
    finally:
        local.down()


@contextlib.asynccontextmanager
async def kafka_of_its_own(
    settings: Settings, stack: Endpoints, state_dir: Path, broker: str
) -> AsyncIterator[LocalStack]:
    """A Kafka broker of a test's own choice (`local.kafka_broker`), with its topics; the
    session's other services are given as addresses, so this stack manages the broker only."""
    local = on_free_ports(state_dir).model_copy(update={"kafka_broker": broker})
    side = settings.model_copy(
        update={
            "local": local,
            "temporal_address": stack.temporal,
            "redis_url": stack.redis,
            "dashscope_base_url": stack.dashscope,
            "notifications": NotificationSettings(),  # no receiver of its own
        }
    )
    own = LocalStack(side)
    assert [s.name for s in own.services] == ["kafka"]
    await own.up()
    try:
        await ensure_topics(own.endpoints.kafka, settings.kafka)
        yield own
    finally:
        own.down()


@pytest.fixture
async def strict_group_kafka(
    settings: Settings, stack: Endpoints, tmp_path: Path
) -> AsyncIterator[LocalStack]:
    """tansu, whose consumer groups behave as Apache Kafka's where the default broker's do not
    (README: the local Kafka broker): a kill -9'd member is evicted when its session times
    out, and a commit from a member that overran max_poll_interval_ms is refused."""
    async with kafka_of_its_own(settings, stack, tmp_path / "kafka-state", "tansu") as own:
        yield own


@pytest.fixture(scope="session")
async def client(stack: Endpoints, settings: Settings) -> Client:
    return await connect(stack.temporal, settings.temporal.namespace)


@pytest.fixture(scope="module")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, one per test module: a whole-suite run once lost
    the session's single server mid-run (it stopped answering, then refused connections) and
    every later module failed with it; per module, its state also stays small."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def redis(stack: Endpoints) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
async def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A real three-master Valkey Cluster on loopback ports: its `redis+cluster://` URL."""
    async with valkey_cluster(tmp_path_factory.mktemp("cluster")) as url:
        yield url


@pytest.fixture(params=["single", "cluster"])
def store_url(request: pytest.FixtureRequest, stack: Endpoints) -> str:
    """The URL of each kind of store riskflow supports: one Redis, then a Redis Cluster."""
    if request.param == "cluster":
        return str(request.getfixturevalue("cluster_url"))
    return stack.redis


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[RedisClient]:
    """A flushed client of `store_url` (the cluster's every primary is flushed)."""
    client = redis_client(store_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def dashscope_admin(stack: Endpoints) -> AsyncIterator[DashScopeAdmin]:
    admin = DashScopeAdmin(stack.dashscope.removesuffix("/api/v1"))
    await admin.reset()
    try:
        yield admin
    finally:
        await admin.reset()
        await admin.close()


class DashScopeAdmin:
    """Faults and statistics of the local DashScope server."""

    def __init__(self, base: str) -> None:
        self._base = base
        self._session = aiohttp.ClientSession(trust_env=False)

    async def faults(self, **config: object) -> None:
        async with self._session.post(f"{self._base}/admin/faults", json=config) as response:
            assert response.status == 200, await response.text()

    async def stats(self) -> dict[str, object]:
        async with self._session.get(f"{self._base}/admin/stats") as response:
            data: dict[str, object] = await response.json()
            return data

    async def requests(self) -> list[dict[str, Any]]:
        """The request bodies the server received (newest last), with key_id and endpoint."""
        async with self._session.get(f"{self._base}/admin/requests") as response:
            data: list[dict[str, Any]] = await response.json()
            return data

    async def post_limits(self, **limits: object) -> None:
        """The limits the server enforces until reset (`fake_dashscope.limits.LimitsConfig`)."""
        async with self._session.post(f"{self._base}/admin/limits", json=limits) as response:
            assert response.status == 200, await response.text()

    async def reset(self) -> None:
        async with self._session.post(f"{self._base}/admin/reset") as response:
            assert response.status == 200

    async def close(self) -> None:
        await self._session.close()


@pytest.fixture
async def receiver_admin(stack: Endpoints) -> AsyncIterator[ReceiverAdmin]:
    """The local stack's notification receiver, emptied before and after the test."""
    admin = ReceiverAdmin(stack.receiver)
    await admin.reset()
    try:
        yield admin
    finally:
        await admin.reset()
        await admin.close()


class ReceiverAdmin:
    """What the local notification receiver got, and scripted vendor answers
    (devstack.receivers.server)."""

    def __init__(self, base: str) -> None:
        self._base = base
        self._session = aiohttp.ClientSession(trust_env=False)

    async def notifications(self, channel: str | None = None) -> list[dict[str, Any]]:
        params = {"channel": channel} if channel else {}
        async with self._session.get(
            f"{self._base}/admin/notifications", params=params
        ) as response:
            data: list[dict[str, Any]] = await response.json()
            return data

    async def rejections(self) -> list[dict[str, Any]]:
        async with self._session.get(f"{self._base}/admin/rejections") as response:
            data: list[dict[str, Any]] = await response.json()
            return data

    async def faults(self, *faults: dict[str, object]) -> None:
        body = {"faults": list(faults)}
        async with self._session.post(f"{self._base}/admin/faults", json=body) as response:
            assert response.status == 200, await response.text()

    async def reset(self) -> None:
        async with self._session.post(f"{self._base}/admin/reset") as response:
            assert response.status == 200

    async def close(self) -> None:
        await self._session.close()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unique() -> Iterator[str]:
    yield uuid.uuid4().hex[:10]


async def eventually(check: object, within: float = 20.0, interval: float = 0.1) -> None:
    """Poll an async predicate until it holds."""
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if await check():
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_worker(
    client: Client, settings: Settings, endpoints: Endpoints, task_queue: str
) -> AsyncIterator[WorkerDeps]:
    """A real worker (real Redis, Kafka producer and DashScope client) on its own queue."""
    async with (
        worker_deps(settings, endpoints) as deps,
        build_worker(client, settings, deps, task_queue),
    ):
        yield deps


async def read_topic(
    bootstrap: str,
    topic: str,
    match: Callable[[dict[str, Any]], bool],
    count: int,
    within: float = 20.0,
    distinct: Callable[[dict[str, Any]], Any] | None = None,
) -> list[dict[str, Any]]:
    """Read `topic` from the start until at least `count` JSON messages match, or `within`
    seconds pass (headers under '_headers'). Batches are read whole, so a topic holding more
    matches than `count` may give more: on a live source assert `>= count`, not `== count`.
    With `distinct`, `count` counts distinct values of it: an at-least-once producer may have
    written a message twice (an activity retried after a broker restart), and a duplicate must
    not end the read before every distinct message was seen."""
    consumer = Consumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    found: list[dict[str, Any]] = []
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within

        def seen() -> int:
            return len({distinct(d) for d in found}) if distinct else len(found)

        while seen() < count and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for record in (r for records in batch.values() for r in records):
                try:
                    data = json.loads(record.value)
                except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
                    data = {"_raw": record.value}
                if not isinstance(data, dict):
                    data = {"_raw": record.value}
                data["_headers"] = {k: v.decode() for k, v in record.headers}
                data["_key"], data["_value"] = record.key, record.value
                if match(data):
                    found.append(data)
    finally:
        await consumer.stop()
    return found


async def group_from_now(bootstrap: str, kafka: KafkaSettings, topic: str, group: str) -> None:
    """Commit `group`'s offsets at `topic`'s current end, so that a bridge of this new group
    reads only what is sent from now on, not every message earlier tests of the session sent
    to a shared topic (a backlog that keeps the key pool busy for minutes)."""
    consumer = make_consumer(bootstrap, kafka, group_id=group)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata partitions_for_topic reads
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"{topic} has no partitions"
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def run_command(*argv: str | Path) -> str:
    """Run a command without blocking the event loop (a worker may be running on it)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def cli_env(settings: Settings) -> dict[str, str]:
    local = settings.local
    return {
        **os.environ,
        "RISKFLOW_LOCAL__STATE_DIR": str(local.state_dir),
        "RISKFLOW_LOCAL__TEMPORAL_PORT": str(local.temporal_port),
        "RISKFLOW_LOCAL__TEMPORAL_UI_PORT": str(local.temporal_ui_port),
        "RISKFLOW_LOCAL__KAFKA_PORT": str(local.kafka_port),
        "RISKFLOW_LOCAL__REDIS_PORT": str(local.redis_port),
        "RISKFLOW_LOCAL__DASHSCOPE_PORT": str(local.dashscope_port),
        "RISKFLOW_LOCAL__RECEIVER_PORT": str(local.receiver_port),
        "RISKFLOW_LOCAL__SMTP_PORT": str(local.smtp_port),
        "RISKFLOW_LOCAL__KAFKA_BROKER": local.kafka_broker,
        "RISKFLOW_KAFKA__SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
        "RISKFLOW_KAFKA__HEARTBEAT_INTERVAL_MS": str(settings.kafka.heartbeat_interval_ms),
        "RISKFLOW_BRIDGE__MODE": settings.bridge.mode,
    }
