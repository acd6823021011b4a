"""The worker: activities built with their clients, registered as bound methods."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.aggregate import AggregateActivities, ResultPublisher
from activities.incidents import IncidentActivities
from activities.keypool import KeyPool
from activities.lease import LeaseActivities
from activities.llm import LLMActivities
from activities.notify import NotifyActivities
from activities.notify.http import fresh_connection_session
from activities.notify.mail import SmtpMailer
from activities.providers.base import LLMClient
from activities.providers.dashscope import one_request_session
from activities.providers.route import KeyRoutes, open_routes
from activities.spend import SpendLedger
from activities.task import PromptBook, TaskActivities
from riskflow.config.channels import ChannelSecrets
from riskflow.config.keys import KeyRing
from riskflow.config.loader import load_settings
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_producer, start_client
from riskflow.infra.metrics import CameraLabels
from riskflow.infra.redis import RedisClient, check_server_version, redis_client, when_reachable
from riskflow.infra.shutdown import stop_on_signals
from workers.common.client import connect_process
from workers.common.interceptors import MetricsInterceptor
from workers.worker import keypool_metrics
from workflows.assessment import RiskAssessmentWorkflow
from workflows.incident import IncidentWorkflow

logger = logging.getLogger(__name__)


@dataclass
class WorkerDeps:
    redis: RedisClient
    producer: ResultPublisher
    llm: LLMClient | KeyRoutes  # each key's provider and client (tests may inject one client)
    ring: KeyRing
    notify: NotifyActivities


def build_worker(
    client: Client,
    settings: Settings,
    deps: WorkerDeps,
    task_queue: str,
    notify: Callable[..., Awaitable[Any]] | None = None,
    graceful_shutdown_seconds: float | None = None,
) -> Worker:
    """The worker of both workflows and every activity. `notify` replaces the notification
    channels' activity (tests record what would be sent; default: `deps.notify`). On shutdown
    its in-flight activities get `graceful_shutdown_seconds` (default
    `temporal.graceful_shutdown_seconds`), and never less than an LLM call can take, to finish
    before they are cancelled."""
    pool = KeyPool(deps.redis, settings.keys.scheduler)
    ledger = SpendLedger(deps.redis, settings.sites, settings.prices)
    task = TaskActivities(deps.redis, settings.llm, PromptBook.of(settings), ledger)
    lease = LeaseActivities(pool)

    def reload_ring() -> KeyRing:
        return KeyRing.from_environment(load_settings(settings.config_dir).keys)

    llm = LLMActivities(
        pool,
        deps.ring,
        deps.llm,
        deps.redis,
        settings.keys.scheduler,
        reload_ring,
        settings.bridge.snapshot_url_hosts,
        ledger,
    )
    # A deploy lets in-flight LLM calls finish (and release their leases) before it stops.
    # (at least the LLM activity's start-to-close timeout, see workers.bridge.bridge's policy).
    grace = timedelta(
        seconds=settings.worker_shutdown_seconds()
        if graceful_shutdown_seconds is None
        else max(graceful_shutdown_seconds, settings.llm_call_seconds())
    )
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
            llm.lease_and_call,
            aggregate.aggregate,
            incidents.gate,
            incidents.record,
            notify or deps.notify.notify,
        ],
        interceptors=[MetricsInterceptor()],
        # `workflows` passed through: the sandbox would re-import (compile and execute) the
        # workflow's module for every run, 15-20 ms of CPU per incident on the development
        # machine against about 1 ms. Their purity is checked statically instead
        # (tests/test_workflow_purity.py and the `pure-workflows` import contract).
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                "opentelemetry", "redis", "workflows"
            )
        ),
        max_concurrent_activities=200,
        graceful_shutdown_timeout=grace,
    )


@contextlib.asynccontextmanager
async def worker_deps(settings: Settings, endpoints: Endpoints) -> AsyncIterator[WorkerDeps]:
    """Open every client the activities need; close them all on the way out."""
    ring = KeyRing.from_environment(settings.keys)
    channels = ChannelSecrets.from_environment(settings.notifications)  # ConfigError names them
    redis = redis_client(endpoints.redis, timeout_seconds=5)
    producer = make_producer(endpoints.kafka, settings.kafka)
    loopback = "127.0.0.1" in endpoints.dashscope or "localhost" in endpoints.dashscope
    session = one_request_session(trust_env=not loopback)
    notify_session = fresh_connection_session(channels.all_configured(settings.notifications))
    await start_client(producer)
    try:
        # A store stalled or restarting at start is waited out, not a reason to exit.
        server = await when_reachable(lambda: check_server_version(redis))  # too old: raises
        logger.info("key pool store: %s", server)
        for warning in settings.capacity_warnings():
            logger.warning("%s", warning)
        await when_reachable(lambda: KeyPool(redis, settings.keys.scheduler).sync(settings.keys))
        notify = _notify(settings, endpoints, notify_session, redis, channels)
        timeout = settings.llm.request_timeout_seconds
        models = settings.llm.models
        async with open_routes(settings.keys, models, endpoints.dashscope, session, timeout) as llm:
            yield WorkerDeps(redis=redis, producer=producer, llm=llm, ring=ring, notify=notify)
    finally:
        await producer.stop()
        await session.close()
        await notify_session.close()
        await redis.aclose()


def _notify(
    settings: Settings,
    endpoints: Endpoints,
    session: aiohttp.ClientSession,
    redis: RedisClient,
    channels: ChannelSecrets,
) -> NotifyActivities:
    """The notification channels; those without an address go to the local receiver."""
    host, _, port = endpoints.smtp.rpartition(":")
    mailer = SmtpMailer(host, int(port), endpoints.receiver_ca_file)
    config = settings.notifications
    return NotifyActivities(session, mailer, redis, config, channels, endpoints.receiver)


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
