"""`riskflow replay run`: recorded events through candidate configurations, in shadow.

Each (event, candidate) pair is one `ReplayAssessmentWorkflow` on an in-process worker of its
own task queue. That worker registers only `build_replay_task`, `acquire_lease` and
`call_llm`: the real key pool and provider client, so the provider never sees more than the
pool's limits and the outcome is what the live workflow would have produced; but no
aggregation activity and no Kafka producer exist in it, so a replay cannot touch
`camera:*:latest`, `alerts:*` or the results topic, nor notify anyone. Recorded snapshots are
staged in Redis under `snapshot:{camera}:replay-{run}-{n}` (a snapshot key of the event's camera,
the only kind the LLM activity reads) for the run, with a TTL, and deleted after.

New assessments stop being started once the tokens or the cost spent reach the budget
(assessments in flight, at most `replay.concurrency`, still finish and are counted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.keypool import KeyPool
from activities.lease import LeaseActivities
from activities.llm import LLMActivities
from activities.providers.base import LLMClient
from activities.providers.dashscope import DashScopeClient
from activities.task import PromptBook, TaskActivities
from riskflow.config.keys import KeyRing
from riskflow.config.llm import AssessmentPolicy
from riskflow.config.replay import Candidate
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import AssessmentInput
from riskflow.contracts.events import DetectionEvent, SnapshotRef
from riskflow.contracts.replay import RecordedEvent, ReplayOutcome, ReplayTaskInput
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient, redis_client, when_reachable
from riskflow.names import camera_snapshot_prefix
from workers.common.client import connect
from workers.common.significance import assess_significance
from workers.replay.files import load_candidates, load_events
from workers.replay.markdown import markdown
from workers.replay.report import build_report
from workflows.replay import ReplayAssessmentWorkflow

logger = logging.getLogger(__name__)

UNFLAGGED = "unflagged"  # the situation of a recorded event the bridge would not have flagged


@dataclass(frozen=True)
class Budget:
    """Stop starting assessments once either is reached (None: no limit)."""

    max_tokens: int | None = None
    max_cost: float | None = None

    def reached(self, tokens: int, cost: float) -> bool:
        return (self.max_tokens is not None and tokens >= self.max_tokens) or (
            self.max_cost is not None and cost >= self.max_cost
        )


@dataclass
class ReplayRun:
    """What a replay did: the outcomes in (event, candidate) order, and what it spent."""

    run_id: str
    outcomes: list[tuple[int, ReplayOutcome]] = field(default_factory=list)
    planned: int = 0
    stopped_by_budget: bool = False
    tokens: int = 0
    cost: float = 0.0


@dataclass
class ReplayDeps:
    redis: RedisClient
    llm: LLMClient
    ring: KeyRing


@contextlib.asynccontextmanager
async def replay_deps(settings: Settings, endpoints: Endpoints) -> AsyncIterator[ReplayDeps]:
    """Redis and the provider client (no Kafka: a replay publishes nothing)."""
    ring = KeyRing.from_environment(settings.keys)
    redis = redis_client(endpoints.redis, timeout_seconds=5)
    loopback = "127.0.0.1" in endpoints.dashscope or "localhost" in endpoints.dashscope
    session = aiohttp.ClientSession(trust_env=not loopback)
    try:
        await when_reachable(lambda: KeyPool(redis, settings.keys.scheduler).sync(settings.keys))
        llm = DashScopeClient(endpoints.dashscope, session, settings.llm.request_timeout_seconds)
        yield ReplayDeps(redis=redis, llm=llm, ring=ring)
    finally:
        await session.close()
        await redis.aclose()


def replay_worker(client: Client, settings: Settings, deps: ReplayDeps, task_queue: str) -> Worker:
    """A worker for replays only: no aggregation activity is registered."""
    pool = KeyPool(deps.redis, settings.keys.scheduler)
    task = TaskActivities(deps.redis, settings.llm, PromptBook.of(settings))
    lease = LeaseActivities(pool)
    llm = LLMActivities(pool, deps.ring, deps.llm, deps.redis, settings.keys.scheduler)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ReplayAssessmentWorkflow],
        activities=[task.build_replay_task, lease.acquire_lease, llm.call_llm],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                "opentelemetry", "redis"
            )
        ),
        max_concurrent_activities=settings.replay.concurrency * 2,
    )


def policy_of(settings: Settings) -> AssessmentPolicy:
    """The live bridge's bounds."""
    return settings.assessment_policy()


def replay_snapshot_key(camera_id: str, run_id: str, n: int) -> str:
    """Where a recorded snapshot is staged for a replay run: one of the camera's snapshot
    keys (`riskflow.names.camera_snapshot_prefix`)."""
    return f"{camera_snapshot_prefix(camera_id)}replay-{run_id}-{n}"


async def stage_snapshots(
    redis: RedisClient, run_id: str, events: list[RecordedEvent], ttl_seconds: int
) -> list[DetectionEvent]:
    """The events to assess: recorded snapshots staged in Redis, expired ones dropped."""
    staged: list[DetectionEvent] = []
    for n, recorded in enumerate(events):
        event = recorded.event
        if recorded.snapshot_b64 is not None:
            key = replay_snapshot_key(event.camera_id, run_id, n)
            await redis.set(key, base64.b64decode(recorded.snapshot_b64), ex=ttl_seconds)
            event = event.model_copy(update={"snapshot": SnapshotRef(store="redis", ref=key)})
        elif event.snapshot is not None and event.snapshot.store == "redis":
            event = event.model_copy(update={"snapshot": None})  # long gone from Redis
        staged.append(event)
    return staged


async def replay(
    client: Client,
    settings: Settings,
    deps: ReplayDeps,
    events: list[RecordedEvent],
    candidates: list[Candidate],
    budget: Budget,
    run_id: str,
) -> ReplayRun:
    """Run every event under every candidate (event by event), within the budget."""
    task_queue = f"replay-{run_id}"
    staged = await stage_snapshots(deps.redis, run_id, events, settings.replay.snapshot_ttl_seconds)
    jobs = [(n, c) for n in range(len(events)) for c in candidates]
    run = ReplayRun(run_id=run_id, planned=len(jobs))
    slots = asyncio.Semaphore(settings.replay.concurrency)
    policy = policy_of(settings)

    async def one(n: int, candidate: Candidate) -> None:
        try:
            event = staged[n]
            situation = events[n].situation or _situation(event, settings)
            inp = AssessmentInput(
                assessment_id=f"replay-{run_id}-{n}-{candidate.name}",
                situation=situation,
                event=event,
                policy=policy,
            )
            outcome = await client.execute_workflow(
                ReplayAssessmentWorkflow.run,
                ReplayTaskInput(assessment=inp, candidate=candidate),
                id=inp.assessment_id,
                task_queue=task_queue,
            )
            run.outcomes.append((n, outcome))
            run.tokens += outcome.usage.input_tokens + outcome.usage.output_tokens
            run.cost += settings.prices.cost(outcome.assessment.provenance.model, outcome.usage)
        finally:
            slots.release()

    started: list[asyncio.Task[None]] = []
    try:
        async with replay_worker(client, settings, deps, task_queue):
            for n, candidate in jobs:
                await slots.acquire()
                if budget.reached(run.tokens, run.cost):
                    run.stopped_by_budget = True
                    slots.release()
                    break
                started.append(asyncio.create_task(one(n, candidate)))
            await asyncio.gather(*started)
    finally:
        keys = [
            replay_snapshot_key(e.event.camera_id, run_id, n)
            for n, e in enumerate(events)
            if e.snapshot_b64
        ]
        if keys:
            await deps.redis.delete(*keys)
    run.outcomes.sort(
        key=lambda item: (item[0], [c.name for c in candidates].index(item[1].candidate))
    )
    logger.info("replay %s: %d of %d assessments", run_id, len(run.outcomes), run.planned)
    return run


def _situation(event: DetectionEvent, settings: Settings) -> str:
    found = assess_significance(event, settings.significance)
    return found.rule if found is not None else UNFLAGGED


@dataclass(frozen=True)
class ReportFiles:
    json_path: Path
    markdown_path: Path
    report: dict[str, object]


async def replay_to_files(
    settings: Settings,
    events_path: Path,
    candidates_path: Path,
    out_dir: Path,
    budget: Budget,
    client: Client | None = None,
) -> ReportFiles:
    """Load, replay and write `report.json` and `report.md` under `out_dir`."""
    events, candidates = load_events(events_path), load_candidates(candidates_path)
    endpoints = Endpoints.of(settings)
    if client is None:
        client = await connect(
            endpoints.temporal, settings.temporal.namespace, None, settings.temporal
        )
    run_id = uuid.uuid4().hex[:10]
    async with replay_deps(settings, endpoints) as deps:
        run = await replay(client, settings, deps, events, candidates, budget, run_id)
    spent = {
        "max_tokens": budget.max_tokens,
        "max_cost": budget.max_cost,
        "tokens": run.tokens,
        "cost": round(run.cost, 6),
        "stopped_by_budget": run.stopped_by_budget,
    }
    report = build_report(
        run_id,
        events,
        candidates,
        run.outcomes,
        settings.prices,
        settings.aggregate.alert_min_level,
        spent,
    )
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    await asyncio.to_thread(_write, json_path, md_path, report)
    return ReportFiles(json_path, md_path, report)


def _write(json_path: Path, md_path: Path, report: dict[str, object]) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report) + "\n", encoding="utf-8")
