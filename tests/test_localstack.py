"""`dev up / status / down` on a stack of its own: idempotent start, a killed service shows
as unhealthy, a taken port is a clear error, down stops exactly what up started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import get_args

import aiohttp
import pytest
from aiokafka import TopicPartition

from devstack.localstack.brokers import BROKERS, broker_of
from devstack.localstack.process import on_free_ports
from devstack.localstack.stack import LocalStack
from riskflow.config.channels import NotificationSettings
from riskflow.config.services import LocalStackSettings
from riskflow.errors import PortInUseError
from riskflow.infra.kafka import ensure_topics, make_consumer, make_producer
from riskflow.infra.pids import pid_alive
from riskflow.names import ALL_TOPICS
from tests.conftest import eventually, local_settings, read_topic, run_command


async def test_lifecycle(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "state")
    stack = LocalStack(settings)
    try:
        first = await stack.up()
        names = ["temporal", "kafka", "redis", "dashscope", "receiver"]
        assert [s.name for s in first] == names
        assert all(s.healthy and s.managed and s.pid for s in first)
        pids = {s.name: s.pid for s in first}
        # Starting twice is harmless: the same processes stay.
        again = await stack.up()
        assert {s.name: s.pid for s in again} == pids
        assert (tmp_path / "state" / "temporal.db").exists()
        assert (tmp_path / "state" / "logs" / "kafka.log").exists()

        # The Web UI answers, and the temporal CLI lists workflows on the started server.
        async with aiohttp.ClientSession(trust_env=False) as session:
            ui = f"http://127.0.0.1:{settings.local.temporal_ui_port}/"
            async with session.get(ui) as response:
                assert response.status == 200
        temporal = Path(sys.executable).parent / "temporal"
        await run_command(temporal, "workflow", "list", "--address", stack.endpoints.temporal)

        # Topics: created once, then found.
        assert set((await ensure_topics(stack.endpoints.kafka, settings.kafka)).values()) == {
            "created"
        }
        assert set((await ensure_topics(stack.endpoints.kafka, settings.kafka)).values()) == {
            "exists"
        }
        assert list(await ensure_topics(stack.endpoints.kafka, settings.kafka)) == list(ALL_TOPICS)

        # A killed service is reported, by name, as not healthy.
        os.kill(pids["kafka"], signal.SIGKILL)  # type: ignore[arg-type]

        async def kafka_gone() -> bool:  # however long the kernel takes to end it
            return not pid_alive(pids["kafka"])  # type: ignore[arg-type]

        await eventually(kafka_gone, within=10)
        status = {s.name: s for s in await stack.status()}
        assert not status["kafka"].healthy and status["kafka"].detail == "not running"
        assert status["redis"].healthy and status["temporal"].healthy
    finally:
        stopped = stack.down()
    assert set(stopped) == {"temporal", "redis", "dashscope", "receiver"}  # kafka already dead
    assert not any(pid_alive(pid) for pid in pids.values() if pid)


async def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "state")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.local.redis_port))
        squatter.listen()
        with pytest.raises(
            PortInUseError, match=rf"redis: port 127.0.0.1:{settings.local.redis_port}"
        ):
            await LocalStack(settings).up()
    assert LocalStack(settings).down() == []


async def test_configured_services_are_not_started(tmp_path: Path) -> None:
    settings = local_settings(
        tmp_path / "state",
        redis_url="redis://127.0.0.1:1/0",
        kafka_bootstrap="127.0.0.1:1",
        temporal_address="127.0.0.1:1",
        dashscope_base_url="http://127.0.0.1:1/api/v1",
        notifications=NotificationSettings(),  # no channel sends to the local receiver
    )
    stack = LocalStack(settings)
    assert stack.services == []
    status = {s.name: s for s in await stack.status()}
    assert not status["redis"].managed and not status["redis"].healthy
    assert status["kafka"].address == "127.0.0.1:1"


def test_cli_reports_bad_config_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "api_keys.yaml").write_text(
        "api_keys:\n  - {key_id: a, key: x, qps_limit: -1, rpm_limit: 1}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--config-dir", str(tmp_path), "dev", "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "api_keys.yaml: api_keys.0.qps_limit" in result.stderr
    assert "Traceback" not in result.stderr


async def test_durable_kafka_survives_a_restart(tmp_path: Path) -> None:
    """kafka_broker: noida-db keeps records and committed offsets across a broker restart, and
    new records after it get new offsets (none overwrites an acknowledged one)."""
    local = on_free_ports(tmp_path / "state").model_copy(update={"kafka_broker": "noida-db"})
    settings = local_settings(
        tmp_path / "state",
        local=local,
        temporal_address="127.0.0.1:1",
        redis_url="redis://127.0.0.1:1/0",
        dashscope_base_url="http://127.0.0.1:1/api/v1",
        notifications=NotificationSettings(),
    )
    # Like Apache Kafka, noida-db refuses sessions under 6 s (tansu's 2 s quirk does not apply).
    kafka = settings.kafka.model_copy(update={"session_timeout_ms": 6000})
    settings = settings.model_copy(update={"kafka": kafka})
    stack = LocalStack(settings)
    assert [s.name for s in stack.services] == ["kafka"]
    bootstrap, topic = stack.endpoints.kafka, "durable-test"

    async def send(values: range) -> list[tuple[int, int]]:
        producer = make_producer(bootstrap, settings.kafka)
        await producer.start()
        try:
            sent = [await producer.send_and_wait(topic, b"m%d" % i, key=b"k") for i in values]
        finally:
            await producer.stop()
        return [(m.partition, m.offset) for m in sent]

    try:
        await stack.up()
        await ensure_topics(bootstrap, settings.kafka, (topic,))
        before = await send(range(20))
        consumer = make_consumer(bootstrap, settings.kafka, topic, group_id="durable")
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=5000, max_records=5)
            await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
        finally:
            await consumer.stop()

        assert stack.stop_only({"kafka"}) == ["kafka"]
        await stack.up()

        after = await send(range(20, 30))
        partition = before[0][0]
        assert after == [(partition, offset) for offset in range(20, 30)]
        records = await read_topic(bootstrap, topic, lambda d: True, 30, within=20)
        assert [r["_value"] for r in records] == [b"m%d" % i for i in range(30)]
        consumer = make_consumer(bootstrap, settings.kafka, topic, group_id="durable")
        await consumer.start()
        try:
            tp = TopicPartition(topic, partition)
            assert await consumer.committed(tp) == 5
        finally:
            await consumer.stop()
    finally:
        assert stack.down() == ["kafka"]


def test_every_kafka_broker_choice_can_be_started() -> None:
    """Each `local.kafka_broker` value has a broker entry (command line, group session floor)."""
    choices = get_args(LocalStackSettings.model_fields["kafka_broker"].annotation)
    assert set(choices) == set(BROKERS)
    assert broker_of(LocalStackSettings()).name == "noida-db"  # speaks to librdkafka clients
    for name in choices:
        local = LocalStackSettings(kafka_broker=name, kafka_port=19092)
        argv = BROKERS[name].argv(local)
        assert "19092" in " ".join(argv) and BROKERS[name].min_session_timeout_ms > 0
