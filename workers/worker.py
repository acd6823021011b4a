"""The worker: activities built with their clients, registered as bound methods."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.aggregate import AggregateActivities, ResultPublisher
from activities.incidents import IncidentActivities
from activities.keypool import KeyPool
from activities.lease import LeaseActivities
from activities.llm import LLMActivities
from activities.notify import NotifyActivities
from activities.providers.base import LLMClient
from activities.providers.dashscope import DashScopeClient
from activities.task import TaskActivities
from riskflow.endpoints import Endpoints
from riskflow.kafka import make_producer, start_client
from riskflow.keyconfig import KeyRing
from riskflow.metrics import CameraLabels
from riskflow.settings import Settings, load_settings
from riskflow.shutdown import stop_on_signals
from workers import keypool_metrics
from workers.client import connect_process
from workers.interceptors import MetricsInterceptor
from workflows.assessment import RiskAssessmentWorkflow
from workflows.incident import IncidentWorkflow

logger = logging.getLogger(__name__)


@dataclass
class WorkerDeps:
    redis: Redis
    producer: ResultPublisher
    llm: LLMClient
    ring: KeyRing


def build_worker(
    client: Client,
    settings: Settings,
    deps: WorkerDeps,
    task_queue: str,
    notify: Callable[..., Awaitable[Any]] | None = None,
) -> Worker:
    """The worker of both workflows and every activity. `notify` replaces the notification
    channels' activity (tests record what would be sent)."""
    pool = KeyPool(deps.redis, settings.keys.scheduler)
    task = TaskActivities(deps.redis, settings.llm)
    lease = LeaseActivities(pool)

    def reload_ring() -> KeyRing:
        return KeyRing.from_environment(load_settings(settings.config_dir).keys)

    llm = LLMActivities(pool, deps.ring, deps.llm, deps.redis, settings.keys.scheduler, reload_ring)
    cameras = CameraLabels([c.id for c in settings.cameras], settings.metrics.max_camera_labels)
    aggregate = AggregateActivities(deps.redis, deps.producer, settings.aggregate, cameras)
    incidents = IncidentActivities(deps.redis, deps.producer, cameras)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RiskAssessmentWorkflow, IncidentWorkflow],
        activities=[
            task.build_task,
            lease.acquire_lease,
            llm.call_llm,
            aggregate.aggregate,
            incidents.gate,
            incidents.record,
            notify or NotifyActivities().notify,
        ],
        interceptors=[MetricsInterceptor()],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                "opentelemetry", "redis"
            )
        ),
        max_concurrent_activities=200,
    )


@contextlib.asynccontextmanager
async def worker_deps(settings: Settings, endpoints: Endpoints) -> AsyncIterator[WorkerDeps]:
    """Open every client the activities need; close them all on the way out."""
    ring = KeyRing.from_environment(settings.keys)
    redis = Redis.from_url(endpoints.redis, socket_timeout=5, socket_connect_timeout=5)
    producer = make_producer(endpoints.kafka, settings.kafka)
    loopback = "127.0.0.1" in endpoints.dashscope or "localhost" in endpoints.dashscope
    session = aiohttp.ClientSession(trust_env=not loopback)
    await start_client(producer)
    try:
        await KeyPool(redis, settings.keys.scheduler).sync(settings.keys)
        llm = DashScopeClient(endpoints.dashscope, session, settings.llm.request_timeout_seconds)
        yield WorkerDeps(redis=redis, producer=producer, llm=llm, ring=ring)
    finally:
        await producer.stop()
        await session.close()
        await redis.aclose()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or `stop`), then shut down cleanly (sdk-python#300)."""
    endpoints = Endpoints.of(settings)
    stop = stop or stop_on_signals()
    metrics = settings.metrics
    client = await connect_process(settings, metrics.worker_port, metrics.worker_sdk_port)
    async with worker_deps(settings, endpoints) as deps:
        worker = build_worker(client, settings, deps, settings.temporal.task_queue)
        refresher = None
        if metrics.enabled:
            collector = keypool_metrics.register(settings.keys)
            pool = KeyPool(deps.redis, settings.keys.scheduler)
            refresher = asyncio.create_task(
                keypool_metrics.refresh_forever(pool, collector, metrics.keypool_refresh_seconds)
            )
        logger.info(
            "worker on %s, task queue %s, keys %s",
            endpoints.temporal,
            settings.temporal.task_queue,
            deps.ring.key_ids(),
        )
        try:
            async with worker:
                await stop.wait()
        finally:
            if refresher is not None:
                refresher.cancel()
        logger.info("worker stopped")
