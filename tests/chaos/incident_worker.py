"""A worker process for the incident chaos test: the real worker, with the notification
channels replaced by a recorder in Redis that behaves as a channel must (one idempotency key
is at most one message) and records every attempt. `python -m tests.chaos.incident_worker
PREFIX`; settings from the environment, as `riskflow worker run`."""

from __future__ import annotations

import asyncio
import sys

from redis.asyncio import Redis
from temporalio import activity

from riskflow.config.loader import load_settings
from riskflow.contracts.notifications import NotificationRequest, NotificationResult
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.shutdown import stop_on_signals
from workers.common.client import connect
from workers.worker.worker import build_worker, worker_deps


class RedisChannel:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    @activity.defn(name="notify")
    async def notify(self, request: NotificationRequest) -> NotificationResult:
        key = request.idempotency_key
        await self._redis.rpush(f"{self._prefix}:attempts", key)
        first = await self._redis.set(f"{self._prefix}:key:{key}", "1", nx=True)
        if not first:
            return NotificationResult(channel=request.channel, status="already_sent")
        await self._redis.rpush(f"{self._prefix}:sent", key)
        return NotificationResult(channel=request.channel, status="sent")


async def main(prefix: str) -> None:
    settings = load_settings()
    endpoints = Endpoints.of(settings)
    stop = stop_on_signals()
    client = await connect(endpoints.temporal, settings.temporal.namespace)
    async with worker_deps(settings, endpoints) as deps:
        channel = RedisChannel(deps.redis, prefix)
        worker = build_worker(
            client, settings, deps, settings.temporal.task_queue, notify=channel.notify
        )
        async with worker:
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
