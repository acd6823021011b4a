"""Faults against the real local stack: every event ends assessed (or failed with its reason),
none lost, none doubled. CI runs the short sizes; `make chaos` the full ones. Each scenario
prints a `CHAOS <name>: {...}` line of figures."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from redis.asyncio import Redis
from temporalio.client import Client

from devstack.localstack.stack import LocalStack
from riskflow.config.keys import KeyRing
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_producer
from riskflow.names import ALL_TOPICS, DEAD_LETTER_TOPIC, DETECTION_TOPIC
from tests.chaos.harness import (
    Cluster,
    Summary,
    audit,
    produce_events,
    scale,
    wait_for_outcomes,
)
from tests.conftest import (
    DashScopeAdmin,
    eventually,
    group_timeouts,
    kafka_of_its_own,
    read_topic,
    run_command,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(3600)]
LOGS: list[Path] = []  # every process log of the session, for the secret scan


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    LOGS.append(tmp_path)
    return tmp_path


async def run_scenario(
    name: str,
    cluster: Cluster,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    client: Client,
    tag: str,
    events: int,
    chaos: Callable[[], Awaitable[None]] | None = None,
    workers: int = 2,
) -> tuple[Summary, list[int]]:
    await cluster.start_bridge()
    for _ in range(workers):
        await cluster.start_worker()
    await asyncio.sleep(3)  # the bridge joins its group
    ids = await produce_events(settings, stack.kafka, tag, events)
    if chaos is not None:
        await chaos()
    await wait_for_outcomes(redis, client, ids, within=scale(240, 1200))
    codes = await cluster.stop()
    summary = await audit(name, redis, stack, ids, client)
    return summary, codes


async def test_worker_kill_9(
    settings: Settings,
    stack: Endpoints,
    client: Client,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    logs: Path,
    unique: str,
) -> None:
    kills, rng = scale(4, 20), random.Random(unique)
    cluster = Cluster(settings, logs, unique)

    async def chaos() -> None:
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            cluster.kill_worker()
            await cluster.start_worker()

    summary, _ = await run_scenario(
        "worker_kill_9",
        cluster,
        settings,
        stack,
        redis,
        client,
        f"k{unique}",
        scale(60, 500),
        chaos,
    )
    summary.extra["kills"] = kills
    print(summary.line())
    assert (summary.lost, summary.duplicates, summary.failed) == (0, 0, 0)


async def test_llm_fault_mix(
    settings: Settings,
    stack: Endpoints,
    client: Client,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    logs: Path,
    unique: str,
) -> None:
    await dashscope_admin.faults(
        rate_429=0.30,
        rate_5xx=0.10,
        rate_hang=0.05,
        rate_malformed=0.05,
        retry_after_seconds=1,
        hang_seconds=30,
        seed=7,
    )
    cluster = Cluster(settings, logs, unique)
    summary, _ = await run_scenario(
        "llm_fault_mix", cluster, settings, stack, redis, client, f"f{unique}", scale(40, 300)
    )
    stats = await dashscope_admin.stats()
    summary.violations = int(stats["violations"])
    summary.extra["provider_outcomes"] = stats["outcomes"]
    print(summary.line())
    assert (summary.lost, summary.duplicates, summary.violations) == (0, 0, 0)
    assert summary.assessed + summary.failed == summary.events


async def _positive(count: Callable[[], Awaitable[int]]) -> bool:
    return await count() > 0


async def test_redis_outage(
    settings: Settings,
    stack: Endpoints,
    client: Client,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    logs: Path,
    unique: str,
) -> None:
    outage = scale(6, 30)
    pid = int((settings.local.state_dir / "pids" / "redis.pid").read_text())
    cluster = Cluster(settings, logs, unique)
    calls: dict[str, int] = {}

    async def requests() -> int:
        stats = await dashscope_admin.stats()
        return sum(k["requests"] for k in stats["keys"].values())

    async def chaos() -> None:
        # Mid-stream: once the first call was made (a slow start must not put the whole
        # outage before the first lease, when it proves nothing).
        await eventually(lambda: _positive(requests), within=120)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(2)  # calls already holding a send slot may finish
            calls["at_start"] = await requests()
            await asyncio.sleep(outage - 2)
            calls["at_end"] = await requests()
        finally:
            os.kill(pid, signal.SIGCONT)

    summary, _ = await run_scenario(
        "redis_outage", cluster, settings, stack, redis, client, f"r{unique}", scale(40, 300), chaos
    )
    summary.extra |= {
        "outage_s": outage,
        "llm_calls_during_outage": calls["at_end"] - calls["at_start"],
    }
    print(summary.line())
    assert calls["at_end"] == calls["at_start"], "an LLM call was made without a lease"
    assert (summary.lost, summary.duplicates, summary.failed) == (0, 0, 0)


async def test_bridge_kill_9_mid_stream(
    settings: Settings,
    stack: Endpoints,
    client: Client,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    strict_group_kafka: LocalStack,
    logs: Path,
    unique: str,
) -> None:
    """kill -9 the bridge twice while events stream in: uncommitted offsets are redelivered to
    the new bridge, whose starts meet the workflows already started. On a broker that evicts
    the killed member when its session times out (strict_group_kafka; noida-db keeps it as the
    group's leader, so no new member would ever be assigned partitions)."""
    kills, events, rate = 2, scale(60, 300), scale(15, 20)
    bootstrap = strict_group_kafka.endpoints.kafka
    stack = replace(stack, kafka=bootstrap)
    timeouts = group_timeouts(strict_group_kafka.settings.local)
    cluster = Cluster(
        settings,
        logs,
        unique,
        RISKFLOW_KAFKA_BOOTSTRAP=bootstrap,
        RISKFLOW_KAFKA__SESSION_TIMEOUT_MS=str(timeouts.session_timeout_ms),
        RISKFLOW_KAFKA__HEARTBEAT_INTERVAL_MS=str(timeouts.heartbeat_interval_ms),
    )
    await cluster.start_bridge()
    for _ in range(2):
        await cluster.start_worker()
    await asyncio.sleep(3)
    producing = asyncio.create_task(
        produce_events(settings, stack.kafka, f"b{unique}", events, rate)
    )
    for _ in range(kills):
        await asyncio.sleep(events / rate / (kills + 1))
        for bridge in cluster.bridges:
            if bridge.returncode is None:
                bridge.kill()
        await cluster.start_bridge()
    ids = await producing
    await wait_for_outcomes(redis, client, ids, within=scale(240, 900))
    await cluster.stop()
    summary = await audit("bridge_kill_9", redis, stack, ids, client)
    summary.extra["bridge_kills"] = kills
    print(summary.line())
    assert (summary.lost, summary.duplicates, summary.failed) == (0, 0, 0)


def bridge_counts(logs: Path) -> dict[str, int]:
    """The outcome counts every bridge logged as it stopped."""
    total: dict[str, int] = {}
    for log in logs.glob("bridge-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "bridge stopped: " in line:
                counts = ast.literal_eval(line.split("bridge stopped: ", 1)[1])
                for outcome, n in counts.items():
                    total[outcome] = total.get(outcome, 0) + n
    return total


@pytest.fixture
async def durable_kafka(
    settings: Settings, stack: Endpoints, tmp_path: Path
) -> AsyncIterator[LocalStack]:
    """noida-db, its log on disk, for broker restarts mid-run."""
    async with kafka_of_its_own(settings, stack, tmp_path / "kafka-state", "noida-db") as own:
        yield own


async def test_broker_and_bridge_restarts(
    settings: Settings,
    stack: Endpoints,
    client: Client,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    durable_kafka: LocalStack,
    logs: Path,
    unique: str,
) -> None:
    """While events stream in, the broker (its log on disk) and the bridge restart in turns:
    every event is assessed once and reaches the results topic. The bridge stops with SIGTERM
    here; kill -9 is test_bridge_kill_9_mid_stream's, on strict_group_kafka."""
    restarts, events, rate = scale(2, 4), scale(60, 300), scale(6, 10)
    bootstrap = durable_kafka.endpoints.kafka
    endpoints = replace(stack, kafka=bootstrap)
    timeouts = group_timeouts(durable_kafka.settings.local)
    cluster = Cluster(
        settings,
        logs,
        unique,
        RISKFLOW_KAFKA_BOOTSTRAP=bootstrap,
        RISKFLOW_KAFKA__SESSION_TIMEOUT_MS=str(timeouts.session_timeout_ms),
        RISKFLOW_KAFKA__HEARTBEAT_INTERVAL_MS=str(timeouts.heartbeat_interval_ms),
    )
    await cluster.start_bridge()
    for _ in range(2):
        await cluster.start_worker()
    await asyncio.sleep(3)
    producing = asyncio.create_task(produce_events(settings, bootstrap, f"d{unique}", events, rate))
    downtime: list[float] = []
    exits: list[int] = []
    for turn in range(restarts * 2):
        await asyncio.sleep(events / rate / (restarts * 2 + 1))
        if turn % 2 == 0:
            started = asyncio.get_running_loop().time()
            assert durable_kafka.stop_only({"kafka"}) == ["kafka"]
            await asyncio.sleep(2)  # down for a while: producers and consumers see it gone
            await durable_kafka.up()
            downtime.append(round(asyncio.get_running_loop().time() - started, 1))
        else:
            exits += await cluster.stop_bridges()
            await cluster.start_bridge()
    ids = await producing
    await wait_for_outcomes(redis, client, ids, within=scale(240, 900))
    alive = [b.returncode is None for b in cluster.bridges]
    await cluster.stop()
    summary = await audit("broker_and_bridge_restarts", redis, endpoints, ids, client)
    summary.extra |= {
        "broker_restarts": restarts,
        "bridge_restarts": restarts,
        "broker_downtime_s": downtime,
        "starts_met_existing": bridge_counts(logs).get("duplicate", 0),
    }
    print(summary.line())
    assert alive[-1], "the last bridge died"
    assert exits == [0] * restarts, "a bridge did not stop cleanly"
    assert (summary.lost, summary.duplicates, summary.failed) == (0, 0, 0)
    assert summary.extra["open_workflows"] == 0
    assert summary.extra["on_results_topic"] == len(ids)


def fuzzed_messages(count: int) -> list[bytes]:
    """Malformed messages from hypothesis: raw bytes, arbitrary JSON, broken events."""
    found: list[bytes] = []
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    json_values = st.recursive(
        scalars, lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=10
    )
    event = {
        "camera_id": st.text(),
        "frame_id": st.integers(),
        "captured_at": st.text() | st.integers(),
        "image": st.dictionaries(st.text(), st.integers()),
        "model_name": st.text(),
        "detections": st.lists(st.dictionaries(st.text(), json_values), max_size=3),
    }
    broken_event = st.fixed_dictionaries({}, optional=event).map(json.dumps)
    strategy = st.binary(max_size=300) | json_values.map(json.dumps) | broken_event

    @hsettings(
        max_examples=count,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(message: str | bytes) -> None:
        found.append(message.encode() if isinstance(message, str) else message)

    collect()
    return found


async def test_fuzzed_messages_are_dead_lettered(
    settings: Settings,
    stack: Endpoints,
    client: Client,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    logs: Path,
    unique: str,
) -> None:
    messages = fuzzed_messages(scale(200, 1000))
    cluster = Cluster(settings, logs, unique)
    await cluster.start_bridge()
    await cluster.start_worker()
    await asyncio.sleep(3)
    producer = make_producer(stack.kafka, settings.kafka)
    key = f"fuzz-{unique}".encode()
    await producer.start()
    try:
        for message in messages:
            await producer.send(DETECTION_TOPIC, message, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    dead = await read_topic(
        stack.kafka,
        DEAD_LETTER_TOPIC,
        lambda d: d["_key"] == key,
        len(messages),
        within=scale(60, 180),
    )
    alive = all(p.returncode is None for p in cluster.bridges)
    ids = await produce_events(
        settings, stack.kafka, f"z{unique}", 1
    )  # a valid event after the flood
    await wait_for_outcomes(redis, client, ids, within=60)
    await cluster.stop()
    summary = await audit("fuzzed_messages", redis, stack, ids, client)
    reasons: dict[str, int] = {}
    for d in dead:
        reasons[d["_headers"]["riskflow-reason"]] = (
            reasons.get(d["_headers"]["riskflow-reason"], 0) + 1
        )
    summary.events = len(messages)
    summary.extra |= {"dead_lettered": len(dead), "reasons": reasons, "bridge_alive": alive}
    print(summary.line())
    assert alive and summary.assessed == 1
    assert sorted(d["_value"] for d in dead) == sorted(messages)  # every one, bytes kept
    assert set(reasons) <= {"invalid_json", "schema", "oversize"}
    assert all(d["_headers"]["riskflow-error"] for d in dead)


async def redis_dump(url: str) -> tuple[list[str], int]:
    redis = Redis.from_url(url)
    readers = {
        "string": redis.get,
        "list": lambda n: redis.lrange(n, 0, -1),
        "hash": redis.hgetall,
        "zset": lambda n: redis.zrange(n, 0, -1),
        "set": redis.smembers,
    }
    text, keys = [], 0
    try:
        async for name in redis.scan_iter(count=1000):
            read = readers.get((await redis.type(name)).decode())
            text.append(f"{name!r} {await read(name) if read else ''!r}")
            keys += 1
    finally:
        await redis.aclose()
    return text, keys


async def test_no_secret_anywhere(settings: Settings, stack: Endpoints, client: Client) -> None:
    """After the scenarios: histories, process logs, Redis and every topic hold no key secret."""
    ring = KeyRing.from_environment(settings.keys)
    secrets = [ring.secret(k) for k in ring.key_ids()]
    workflows = [w async for w in client.list_workflows("")]
    text = [
        (await client.get_workflow_handle(w.id, run_id=w.run_id).fetch_history()).to_json()
        for w in workflows[:300]
    ]
    temporal = str(Path(sys.executable).parent / "temporal")
    for w in workflows[:5]:
        text.append(
            await run_command(
                temporal,
                "workflow",
                "show",
                "--address",
                stack.temporal,
                "--workflow-id",
                w.id,
                "--output",
                "json",
            )
        )
    log_files = [p for folder in LOGS for p in folder.glob("*.log")]
    text += [p.read_text(errors="replace") for p in log_files]
    dump, keys = await redis_dump(stack.redis)
    text += dump
    places: dict[str, int] = {
        "histories": len(workflows),
        "logs": len(log_files),
        "redis_keys": keys,
    }
    for topic in ALL_TOPICS:
        messages = await read_topic(stack.kafka, topic, lambda d: True, 10**9, within=5)
        text += [json.dumps(m, default=repr) for m in messages]
        places[topic] = len(messages)
    blob = "\n".join(text)
    hits = sum(blob.count(secret) for secret in secrets)
    print("CHAOS secret_scan: " + json.dumps({"hits": hits, **places}))
    assert hits == 0
    assert places["histories"] > 0 and places["redis_keys"] > 0 and places[ALL_TOPICS[0]] > 0
