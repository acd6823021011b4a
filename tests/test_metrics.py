"""Real `riskflow worker run` and `riskflow bridge run` processes export Prometheus metrics
that move as events flow, in an exposition promtool accepts."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.localstack.process import free_port
from devstack.simulate import scene_event
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_producer
from riskflow.names import DETECTION_TOPIC
from tests.conftest import cli_env, eventually

BRIDGE = "riskflow_bridge_messages_total"


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


def value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool not installed")
    proc = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, out.decode()


@pytest.fixture
async def processes(
    settings: Settings, stack: Endpoints, unique: str
) -> AsyncIterator[dict[str, int]]:
    ports = {name: free_port() for name in ("worker", "bridge", "worker_sdk", "bridge_sdk")}
    env = {
        **cli_env(settings),
        "RISKFLOW_METRICS__ENABLED": "true",
        "RISKFLOW_METRICS__KEYPOOL_REFRESH_SECONDS": "0.5",
        "RISKFLOW_TEMPORAL__TASK_QUEUE": f"metrics-{unique}",
        "RISKFLOW_BRIDGE__GROUP_ID": f"metrics-{unique}",
        **{f"RISKFLOW_METRICS__{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            role,
            "run",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for role in ("worker", "bridge")
    ]
    try:
        yield ports
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(proc.wait(), 30) for proc in procs]
        assert codes == [0, 0], "worker and bridge must shut down cleanly on SIGTERM"


async def test_metrics_move_as_events_flow(
    processes: dict[str, int], settings: Settings, stack: Endpoints, unique: str
) -> None:
    async def up() -> bool:
        try:
            await scrape(processes["worker"]) and await scrape(processes["bridge"])
        except aiohttp.ClientError:
            return False
        return True

    await eventually(up, within=30)
    camera = f"m-{unique}"
    producer = make_producer(stack.kafka, settings.kafka)
    await producer.start()
    try:
        for frame in range(3):
            event = scene_event(camera, frame, datetime.now(UTC), people=2, falls=1)
            await producer.send_and_wait(
                DETECTION_TOPIC, event.model_dump_json().encode(), key=camera.encode()
            )
        await producer.send_and_wait(DETECTION_TOPIC, b"not json", key=camera.encode())
    finally:
        await producer.stop()

    async def assessed() -> bool:
        text = await scrape(processes["worker"])
        # Every figure of the one assessment is in (they are recorded one after the other).
        return (
            value(text, "riskflow_assessments_total", camera=camera, status="assessed") >= 1
            and value(text, "riskflow_end_to_end_seconds_count", camera=camera) >= 1
            and value(text, "riskflow_llm_requests_total", outcome="Ok") >= 1
            and value(text, "riskflow_keypool_leases_total") >= 1
        )

    async def settled() -> bool:  # every message judged, the key pool refreshed since
        worker, bridge = await scrape(processes["worker"]), await scrape(processes["bridge"])
        outcomes = ("started", "duplicate", "insignificant")
        judged = sum(value(bridge, BRIDGE, camera=camera, outcome=o) for o in outcomes)
        dead = value(bridge, "riskflow_dead_letters_total", reason="invalid_json")
        pool = value(worker, "riskflow_keypool_leases_total") >= 1
        return judged >= 3 and dead >= 1 and pool and value(worker, "riskflow_keypool_up") == 1

    await eventually(assessed, within=60)
    await eventually(settled, within=30)
    worker, bridge = await scrape(processes["worker"]), await scrape(processes["bridge"])
    assert value(bridge, "riskflow_bridge_messages_total", camera=camera, outcome="started") == 1
    assert value(bridge, "riskflow_bridge_messages_total", camera=camera, outcome="duplicate") == 2
    assert value(bridge, "riskflow_detections_total", camera=camera) == 6
    assert value(bridge, "riskflow_dead_letters_total", reason="invalid_json") >= 1
    assert value(bridge, "riskflow_bridge_start_seconds_count") >= 3
    assert value(worker, "riskflow_assessments_total", camera=camera, risk_level="high") == 1
    assert value(worker, "riskflow_end_to_end_seconds_count", camera=camera) == 1
    assert (
        value(worker, "riskflow_activity_seconds_count", activity="call_llm", outcome="completed")
        >= 1
    )
    assert value(worker, "riskflow_llm_requests_total", outcome="Ok") >= 1
    assert value(worker, "riskflow_keypool_leases_total") >= 1
    assert value(worker, "riskflow_keypool_up") == 1
    assert value(worker, "riskflow_keypool_limit", key_id="key_1", window="1s") == 10
    for port in processes.values():
        await promtool_check(await scrape(port))
    sdk = await scrape(processes["worker_sdk"])
    assert "temporal_" in sdk
