"""Chaos harness: real worker and bridge processes on the session's local stack, a fixed set
of significant events, and an audit of every event's outcome in Redis and on the topic."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from redis.asyncio import Redis
from temporalio.client import Client

from devstack.simulate import scene_event
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_producer
from riskflow.names import DETECTION_TOPIC, RESULTS_TOPIC, assessment_key, camera_alerts_key
from tests.conftest import cli_env, read_topic
from workers.common.significance import assess_significance

FULL = os.environ.get("RISKFLOW_CHAOS") == "full"


def scale(short: int, full: int) -> int:
    """The CI-sized figure, or the full one under RISKFLOW_CHAOS=full."""
    return full if FULL else short


@dataclass
class Summary:
    scenario: str
    events: int
    assessed: int = 0
    failed: int = 0
    lost: int = 0
    duplicates: int = 0
    violations: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        figures = {k: v for k, v in vars(self).items() if k not in ("scenario", "extra")}
        return f"CHAOS {self.scenario}: " + json.dumps({**figures, **self.extra})


def _log_file(path: Path) -> BinaryIO:
    return path.open("wb")  # handed to the child process, which writes it until it exits


class Cluster:
    """Worker and bridge processes of their own (task queue, consumer group, logs)."""

    def __init__(self, settings: Settings, logs: Path, tag: str, **env: str) -> None:
        self.logs = logs
        self.env = {
            **cli_env(settings),
            "RISKFLOW_TEMPORAL__TASK_QUEUE": f"chaos-{tag}",
            "RISKFLOW_BRIDGE__GROUP_ID": f"chaos-{tag}",
            "RISKFLOW_METRICS__ENABLED": "false",
            "RISKFLOW_LLM__REQUEST_TIMEOUT_SECONDS": "5",
            **env,
        }
        self.workers: list[asyncio.subprocess.Process] = []
        self.bridges: list[asyncio.subprocess.Process] = []
        self._n = 0

    async def _spawn(self, role: str) -> asyncio.subprocess.Process:
        self._n += 1
        log = _log_file(self.logs / f"{role}-{self._n}.log")
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", role, "run", env=self.env, stdout=log, stderr=log
        )

    async def start_worker(self) -> None:
        """Start a worker and wait until it polls its task queue (a worker still importing,
        killed or stopped then, would not be the worker the scenario means to stop)."""
        self.workers.append(await self._spawn("worker"))
        await self._until_logged(self.workers[-1], "worker", b"worker on ")

    async def start_bridge(self) -> None:
        """Start a bridge and wait until it consumes (its SIGTERM handler is in place by then:
        a bridge still importing would die of a SIGTERM instead of stopping cleanly)."""
        self.bridges.append(await self._spawn("bridge"))
        await self._until_logged(self.bridges[-1], "bridge", b"bridge consuming")

    async def _until_logged(
        self, proc: asyncio.subprocess.Process, role: str, marker: bytes
    ) -> None:
        log, loop = self.logs / f"{role}-{self._n}.log", asyncio.get_running_loop()
        deadline = loop.time() + 120
        while marker not in log.read_bytes():
            assert proc.returncode is None, log.read_text(errors="replace")[-2000:]
            assert loop.time() < deadline, f"{role} not ready after 120 s: {log}"
            await asyncio.sleep(0.1)

    def kill_worker(self) -> None:
        """kill -9 the newest live worker."""
        live = [w for w in self.workers if w.returncode is None]
        live[-1].send_signal(signal.SIGKILL)

    async def stop_bridges(self) -> list[int]:
        """SIGTERM the live bridges (each finishes its batch, commits and leaves the group)."""
        return await _terminate(self.bridges)

    async def stop(self) -> list[int]:
        return await _terminate(self.workers + self.bridges)


async def _terminate(procs: list[asyncio.subprocess.Process]) -> list[int]:
    """SIGTERM the live ones together, then their exit codes."""
    live = [p for p in procs if p.returncode is None]
    for proc in live:
        proc.send_signal(signal.SIGTERM)
    return [await asyncio.wait_for(p.wait(), 60) for p in live]


def runs_query(ids: list[str]) -> str:
    """Visibility query for a scenario's workflows (ids: risk-<tag>-<i>-<rule>-<window>)."""
    prefix = ids[0].rsplit("-", 3)[0] + "-"
    return f'WorkflowId STARTS_WITH "{prefix}"'


async def open_runs(client: Client, ids: list[str]) -> int:
    """How many of a scenario's workflows still run."""
    running = runs_query(ids) + ' AND ExecutionStatus = "Running"'
    return (await client.count_workflows(running)).count


async def wait_for_outcomes(redis: Redis, client: Client, ids: list[str], within: float) -> None:
    """Until every event has its outcome in Redis and every workflow has closed: the results
    topic is written after Redis, so a workflow still retrying its publish has not finished."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        stored = await redis.exists(*[assessment_key(i) for i in ids])
        if stored == len(ids) and await open_runs(client, ids) == 0:
            return
        await asyncio.sleep(0.5)


async def audit(
    scenario: str, redis: Redis, endpoints: Endpoints, ids: list[str], client: Client
) -> Summary:
    """Every event: an outcome in Redis, at most one alert, one workflow, on the results topic."""
    summary = Summary(scenario, len(ids))
    for workflow_id in ids:
        raw = await redis.get(assessment_key(workflow_id))
        if raw is None:
            summary.lost += 1
            continue
        outcome = json.loads(raw)
        if outcome["status"] == "assessed":
            summary.assessed += 1
        else:
            assert outcome["failure_reason"], f"{workflow_id} failed without a reason"
            summary.failed += 1
        alerts = await redis.lrange(camera_alerts_key(outcome["camera_id"]), 0, -1)
        if len({json.loads(a)["assessment_id"] for a in alerts}) != len(alerts) or len(alerts) > 1:
            summary.duplicates += 1
    wanted = set(ids)
    published = await read_topic(
        endpoints.kafka,
        RESULTS_TOPIC,
        lambda d: d.get("assessment_id") in wanted,
        len(ids),
        within=scale(90, 300),  # the whole shared topic, read from its start on a busy box
        distinct=lambda d: d["assessment_id"],
    )
    on_topic = {p["assessment_id"] for p in published}
    summary.extra["on_results_topic"] = len(on_topic)
    if missing := sorted(wanted - on_topic):
        summary.extra["missing_on_results_topic"] = missing[:10]  # which, for the next look
    runs = [w.id async for w in client.list_workflows(runs_query(ids))]
    summary.extra["open_workflows"] = await open_runs(client, ids)
    summary.duplicates += len(runs) - len(set(runs))
    summary.extra["workflow_runs"] = len(runs)
    return summary


async def produce_events(
    settings: Settings, bootstrap: str, tag: str, count: int, rate: float | None = None
) -> list[str]:
    """`count` significant events on distinct cameras (at `rate`/s, or at once); returns their
    workflow ids. Each send is retried until the broker takes it (a retried send may be a
    duplicate: the bridge must absorb that)."""
    from aiokafka.errors import KafkaError

    producer = make_producer(bootstrap, settings.kafka, request_timeout_ms=5000)
    ids = []
    await producer.start()
    try:
        for i in range(count):
            event = scene_event(f"{tag}-{i}", 0, datetime.now(UTC), people=2, falls=1)
            situation = assess_significance(event, settings.significance)
            assert situation is not None
            ids.append(situation.workflow_id)
            for _ in range(120):
                try:
                    await producer.send_and_wait(
                        DETECTION_TOPIC,
                        event.model_dump_json().encode(),
                        key=event.camera_id.encode(),
                    )
                    break
                except KafkaError:
                    await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"the broker never took event {i}")
            if rate:
                await asyncio.sleep(1 / rate)
    finally:
        await producer.stop()
    return ids
