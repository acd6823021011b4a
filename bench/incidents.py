"""The incident path end to end on the local stack: capture -> the incident's first
notification (its `notify` activity, recorded here instead of sent to a channel). One
worker and one bridge serve every row; the local DashScope server answers at once unless a
row injects a fault.

1. Throughput, in rounds: each round starts N bare one-activity workflows
   (bench/bare_workflow.py, a worker of their own kept for the whole run) and produces N
   significant events of N new cameras, back to back, in alternating order (bare first in
   even rounds, incidents first in odd), so a load that comes or goes on a shared machine
   hits both; a warm-up round of each (N/4) comes first and is not counted. Each round's
   ratio is its first notifications/s over its own bare workflows/s. Each subject starts
   once this process (bench, bridge, both workers) is idle again, so neither runs beside
   the work the other left behind. Reported: median, min, max and quartiles of each, and
   every round. Each round's incidents are terminated once all were told.
2. Latency at a fixed rate (default 10 events/s of new cameras): capture to first
   notification, p50/p95/p99.
3. The same latency with the provider failing, a row each, fewer events at a lower rate,
   each waiting at most --fault-wait s after its last event: `answer_60s` (every answer takes
   60 s), `provider_down` (every call 500), `accounts_refusing` (k1's account answers 400
   Arrearage, k2's 429 Throttling.AllocationQuota). After a row its incidents are terminated,
   the faults cleared and the keys enabled again (the refusals row, which disables keys and
   cools groups down, is last).

Percentiles are nearest-rank over every event sent: one whose event was not notified within
the wait is null, and `notified` says how many were (bench/stats.py).

    python -m bench.incidents [--events 100] [--rounds 5] [--rate 10] [--seconds 20]
                              [--fault-events 20] [--fault-rate 4] [--fault-wait 70]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.keypool import KeyPool
from bench._stack import bench_settings, report, services
from bench.bare_workflow import BareWorkflow, echo
from bench.stats import censored_percentiles, spread
from devstack.simulate import scene_event
from riskflow.config.services import MetricsSettings
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import incident_workflow_id
from riskflow.contracts.notifications import NotificationRequest, NotificationResult
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import ensure_topics, make_producer
from riskflow.names import DETECTION_TOPIC
from workers.bridge.bridge import run_bridge
from workers.common.client import connect
from workers.common.significance import assess_significance
from workers.worker.worker import WorkerDeps, build_worker, worker_deps

# Two keys, each its own account (quota group): the refusals row gives each a different code.
KEYS = {
    "api_keys": [
        {"key_id": f"k{n}", "key": f"sk-bench-{n}", "qps_limit": 1000, "rpm_limit": 100000,
         "max_concurrency": 200}
        for n in (1, 2)
    ]
}  # fmt: skip
ARREARAGE = {
    "code": "Arrearage",
    "message": "Access denied, please make sure your account is in good standing.",
}
ALLOCATION = {
    "code": "Throttling.AllocationQuota",
    "message": "Allocated quota exceeded, please increase your quota limit.",
}
FAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "answer_60s": ("every answer takes 60 s", {"latency_ms": 60_000}),
    "provider_down": ("every call answers 500", {"rate_5xx": 1.0}),
    "accounts_refusing": (
        "k1's account answers 400 Arrearage, k2's 429 Throttling.AllocationQuota",
        {
            "rules": [
                {"key_id": "k1", "answer": {"status": 400, "body": ARREARAGE}},
                {"key_id": "k2", "answer": {"status": 429, "body": ALLOCATION}},
            ]
        },
    ),
}


class FirstNotifications:
    """Seconds from capture to the first notification of each incident, by camera."""

    def __init__(self) -> None:
        self.latency: dict[str, float] = {}
        self.captured: dict[str, float] = {}
        self.workflows: dict[str, str] = {}
        self.changed = asyncio.Event()

    @activity.defn(name="notify")
    async def notify(self, request: NotificationRequest) -> NotificationResult:
        camera = request.camera_id
        if camera in self.captured and camera not in self.latency:
            self.latency[camera] = time.time() - self.captured[camera]
            self.changed.set()
        return NotificationResult(channel=request.channel, status="sent")

    async def wait(self, cameras: list[str], within: float = 300.0) -> list[float]:
        deadline = time.monotonic() + within
        while any(c not in self.latency for c in cameras):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return [self.latency[c] for c in cameras if c in self.latency]


async def produce(
    settings: Settings, cameras: list[str], rate: float | None, seen: FirstNotifications
) -> None:
    """A fall on each camera, at `rate` events/s (None: at once)."""
    producer = make_producer(settings.kafka_bootstrap or "", settings.kafka)
    await producer.start()
    try:
        for camera in cameras:
            event = scene_event(camera, 0, datetime.now(UTC), people=2, falls=1)
            situation = assess_significance(event, settings.significance)
            assert situation is not None, "the bench's scene must be significant"
            family = settings.incident_config(camera).family(situation.rule)
            seen.workflows[camera] = incident_workflow_id(camera, family)
            seen.captured[camera] = event.captured_at.timestamp()
            await producer.send(
                DETECTION_TOPIC, event.model_dump_json().encode(), key=camera.encode()
            )
            if rate:
                await asyncio.sleep(1 / rate)
        await producer.flush()
    finally:
        await producer.stop()


def cameras_of(row: str, count: int) -> list[str]:
    return [f"{row}-{uuid.uuid4().hex[:6]}-{i}" for i in range(count)]


async def bare_round(client: Client, queue: str, n: int) -> float:
    """Bare one-activity workflows/s: `n` started at once on the bare worker's queue."""
    tag = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    handles = await asyncio.gather(
        *(
            client.start_workflow(BareWorkflow.run, str(i), id=f"bare-{tag}-{i}", task_queue=queue)
            for i in range(n)
        )
    )
    await asyncio.gather(*(h.result() for h in handles))
    return n / (time.perf_counter() - started)


async def incident_round(
    settings: Settings, client: Client, seen: FirstNotifications, n: int
) -> float:
    """First notifications/s of `n` new incidents produced at once; the incidents are
    terminated once each was told (their ladders would otherwise run beside later rounds)."""
    cameras = cameras_of("tp", n)
    started = time.perf_counter()
    await produce(settings, cameras, None, seen)
    done = await seen.wait(cameras)
    rate = len(done) / (time.perf_counter() - started)
    await terminate(client, [seen.workflows[c] for c in cameras], "bench round over")
    return rate


async def terminate(client: Client, workflow_ids: list[str], reason: str) -> None:
    """Terminate incidents the bench opened; their children (the assessments) go with them."""
    for workflow_id in workflow_ids:
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(workflow_id).terminate(reason)


async def settled(quiet: float = 0.1, step: float = 0.5, within: float = 60.0) -> float:
    """Wait until this process (bench, bridge and both workers) is idle: less than `quiet` of
    a core used over `step` s, or `within` s passed. Returns the seconds waited. The incident
    rounds leave work behind (each incident's assessment and view after its first message);
    without this, whichever subject runs second in a round shares the CPU with it."""
    started = time.perf_counter()
    while time.perf_counter() - started < within:
        cpu = time.process_time()
        await asyncio.sleep(step)
        if time.process_time() - cpu < quiet * step:
            break
    return time.perf_counter() - started


async def rounds(
    args: argparse.Namespace, settings: Settings, client: Client, seen: FirstNotifications
) -> dict[str, Any]:
    """Throughput rounds, bare and incidents back to back in alternating order, each subject
    started on an idle process (`settled`)."""
    queue = f"bare-{uuid.uuid4().hex[:8]}"
    bare: list[float] = []
    incidents: list[float] = []
    waited: list[float] = []

    async def bare_subject(events: int) -> float:
        waited.append(await settled())
        return await bare_round(client, queue, events)

    async def incident_subject(events: int) -> float:
        waited.append(await settled())
        return await incident_round(settings, client, seen, events)

    async with Worker(client, task_queue=queue, workflows=[BareWorkflow], activities=[echo]):
        for n in range(args.rounds + 1):
            events = args.events if n else max(10, args.events // 4)  # round 0: warm-up
            if n % 2 == 0:
                b = await bare_subject(events)
                i = await incident_subject(events)
            else:
                i = await incident_subject(events)
                b = await bare_subject(events)
            if n:
                bare.append(b)
                incidents.append(i)
    return {
        "events_per_round": args.events,
        "rounds": args.rounds,
        "order": "bare first in even rounds, incidents first in odd; a warm-up round before",
        "settled_before_each_s": spread(waited, 1),
        "bare_workflows_per_s": spread(bare, 2),
        "first_notifications_per_s": spread(incidents, 2),
        "ratio_vs_bare_workflow": spread([i / b for i, b in zip(incidents, bare, strict=True)]),
    }


async def latency_row(
    settings: Settings, seen: FirstNotifications, row: str, count: int, rate: float, wait: float
) -> dict[str, Any]:
    """Capture -> first notification of `count` new incidents at `rate` events/s, waiting at
    most `wait` s after the last event."""
    cameras = cameras_of(row, count)
    await produce(settings, cameras, rate, seen)
    arrived = await seen.wait(cameras, within=wait)
    figures = censored_percentiles(arrived, len(cameras))
    return {
        "events_per_s": rate,
        "events": len(cameras),
        "notified": len(arrived),
        "waited_s": wait,
        **figures,
    }


class Provider:
    """The local DashScope server's fault injection (`/admin/faults`, `/admin/reset`)."""

    def __init__(self, session: aiohttp.ClientSession, dashscope: str) -> None:
        self._session, self._root = session, dashscope.removesuffix("/api/v1")

    async def post(self, path: str, body: dict[str, Any] | None = None) -> None:
        async with self._session.post(f"{self._root}{path}", json=body) as response:
            response.raise_for_status()


async def fault_row(
    row: str,
    args: argparse.Namespace,
    settings: Settings,
    client: Client,
    deps: WorkerDeps,
    seen: FirstNotifications,
) -> dict[str, Any]:
    """One latency row with a fault injected; everything it started or changed is undone."""
    what, fault = FAULTS[row]
    async with aiohttp.ClientSession(trust_env=False) as session:
        provider = Provider(session, Endpoints.of(settings).dashscope)
        await provider.post("/admin/faults", fault)
        try:
            figures = await latency_row(
                settings, seen, row, args.fault_events, args.fault_rate, args.fault_wait
            )
        finally:
            await provider.post("/admin/reset")
    ours = [w for c, w in seen.workflows.items() if c.startswith(f"{row}-")]
    await terminate(client, ours, f"bench row {row} over")
    pool = KeyPool(deps.redis, settings.keys.scheduler)
    for key in settings.keys.api_keys:
        await pool.set_disabled(key.key_id, None)  # enabled, no strikes, no cooldown
    return {"fault": what, **figures}


@contextlib.asynccontextmanager
async def incident_path(
    settings: Settings, endpoints: Endpoints, client: Client, seen: FirstNotifications
) -> AsyncIterator[WorkerDeps]:
    """The worker (its `notify` recorded by `seen`) and the bridge, until the block ends;
    ready once a first incident was notified."""
    stop = asyncio.Event()
    queue = settings.temporal.task_queue
    async with (
        worker_deps(settings, endpoints) as deps,
        build_worker(client, settings, deps, queue, notify=seen.notify),
    ):
        bridge = asyncio.create_task(run_bridge(settings, stop))
        try:
            probe = cameras_of("probe", 1)
            await produce(settings, probe, None, seen)
            if not await seen.wait(probe, within=120):
                raise RuntimeError("the incident path notified nothing within 120 s")
            yield deps
        finally:
            stop.set()
            await bridge


def bench_config(tmp: Path) -> Settings:
    config = tmp / "config"
    config.mkdir()
    (config / "api_keys.yaml").write_text(yaml.safe_dump(KEYS))
    base = bench_settings(tmp / "state", config)
    return base.model_copy(
        update={
            "metrics": MetricsSettings(enabled=False),
            "bridge": base.bridge.model_copy(update={"mode": "incidents"}),
        }
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = bench_config(Path(tmp))
        async with services(base, {"temporal", "kafka", "redis", "dashscope"}) as endpoints:
            settings = base.model_copy(
                update={
                    "temporal_address": endpoints.temporal,
                    "kafka_bootstrap": endpoints.kafka,
                    "redis_url": endpoints.redis,
                    "dashscope_base_url": endpoints.dashscope,
                }
            )
            await ensure_topics(endpoints.kafka, settings.kafka)
            client = await connect(endpoints.temporal, settings.temporal.namespace)
            seen = FirstNotifications()
            async with incident_path(settings, endpoints, client, seen) as deps:
                throughput = await rounds(args, settings, client, seen)
                count = int(args.rate * args.seconds)
                healthy = await latency_row(settings, seen, "lat", count, args.rate, 300.0)
                faults = {}
                for row in FAULTS:  # the refusals row, which disables keys, last
                    faults[row] = await fault_row(row, args, settings, client, deps, seen)
    figures = {**throughput, "latency_at_rate": healthy, "latency_with_faults": faults}
    report("incidents", figures)
    summary(figures)


def summary(figures: dict[str, Any]) -> None:
    for name in ("bare_workflows_per_s", "first_notifications_per_s", "ratio_vs_bare_workflow"):
        f = figures[name]
        print(f"{name:28} median {f['median']:8.3f}  min {f['min']:8.3f}  max {f['max']:8.3f}")
    rows = {"at rate": figures["latency_at_rate"], **figures["latency_with_faults"]}
    for name, row in rows.items():
        notified = f"{row['notified']}/{row['events']}"
        print(f"capture -> first notification, {name:18} {notified:>8} notified  p50 "
              f"{row['p50']}  p95 {row['p95']}  p99 {row['p99']}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100, help="events per throughput round")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds (+1 warm-up)")
    parser.add_argument("--rate", type=float, default=10.0, help="events/s of the latency row")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency row")
    parser.add_argument("--fault-events", type=int, default=20, help="events per fault row")
    parser.add_argument("--fault-rate", type=float, default=4.0, help="events/s of a fault row")
    parser.add_argument(
        "--fault-wait", type=float, default=70.0, help="s a fault row waits after its last event"
    )
    asyncio.run(main(parser.parse_args()))
