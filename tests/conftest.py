"""Real servers, started once per session on free loopback ports: the local stack itself
(Temporal dev server, tansu, Valkey, the local DashScope server) and Temporal's
time-skipping test server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from riskflow.endpoints import Endpoints
from riskflow.kafka import ensure_topics
from riskflow.localstack.process import free_port
from riskflow.localstack.services import venv_binary
from riskflow.localstack.stack import LocalStack
from riskflow.settings import KafkaSettings, LocalStackSettings, Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"


def local_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings for a stack of our own on free ports (never the developer's default ports)."""
    local = LocalStackSettings(
        state_dir=state_dir,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        kafka_port=free_port(),
        redis_port=free_port(),
        dashscope_port=free_port(),
    )
    kafka = KafkaSettings(session_timeout_ms=2000, heartbeat_interval_ms=500)
    return load_settings(CONFIG, local=local, kafka=kafka, **overrides)


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


@pytest.fixture(scope="session")
async def client(stack: Endpoints, settings: Settings) -> Client:
    return await Client.connect(
        stack.temporal,
        namespace=settings.temporal.namespace,
        data_converter=pydantic_data_converter,
    )


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
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


async def eventually(check: object, timeout: float = 20.0, interval: float = 0.1) -> None:
    """Poll an async predicate until it holds."""
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await check():
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
