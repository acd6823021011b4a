"""Live camera tiles: one poller per console process reads `camera:{id}:latest` and hands
every change to the browsers' server-sent-event streams.

Why Redis and not the results topic: `latest` only moves forward in capture time (a late or
redelivered result never turns a tile back), and a restarted console is current at once; the
topic is at-least-once and a new consumer would have to replay it. One pipelined GET per
camera every `console.poll_seconds` (200 cameras: one round trip) bounds the delay; cameras
not in the configuration are found by a SCAN every `console.discover_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.exceptions import RedisError

from console.data import discover_cameras, read_latest
from riskflow.console_config import ConsoleSettings
from riskflow.models import Assessment
from riskflow.redis_client import RedisClient

logger = logging.getLogger(__name__)

QUEUE_SIZE = 1000


class LiveTiles:
    """Polls Redis; `subscribe()` yields the camera ids' new latest assessments as they come."""

    def __init__(self, redis: RedisClient, configured: list[str], settings: ConsoleSettings):
        self._redis = redis
        self._settings = settings
        self.cameras: list[str] = list(dict.fromkeys(configured))
        self._configured = set(self.cameras)
        self._seen: dict[str, str] = {}
        self._subscribers: set[asyncio.Queue[Assessment]] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Find the cameras and remember what they show now; then poll in the background."""
        await self._discover()
        try:
            await self.poll()  # nobody subscribed yet: this only fills `_seen`
        except RedisError as exc:
            logger.warning("reading latest assessments failed: %s", exc)
        self._task = asyncio.create_task(self._loop(), name="console-live-tiles")

    async def stop(self) -> None:
        """Stop polling. By an event, not only by cancelling: the Redis client can swallow a
        cancellation that arrives in the middle of a command, and the loop would go on."""
        self._stopping.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._task, self._settings.poll_seconds + 10)
        except TimeoutError:
            logger.warning("the live poller did not stop in time; cancelled")

    async def _discover(self) -> None:
        try:
            found = await discover_cameras(self._redis)
        except RedisError as exc:
            logger.warning("camera discovery failed: %s", exc)
            return
        for camera in sorted(found - set(self.cameras)):
            self.cameras.append(camera)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_discovery = loop.time() + self._settings.discover_seconds
        while not self._stopping.is_set():
            try:
                await self.poll()
            except RedisError as exc:
                logger.warning("reading latest assessments failed: %s", exc)
            if loop.time() >= next_discovery:
                await self._discover()
                next_discovery = loop.time() + self._settings.discover_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.poll_seconds)

    async def poll(self) -> list[Assessment]:
        """Read every camera's latest once; publish and return the changed ones."""
        latest = await read_latest(self._redis, self.cameras)
        changed = []
        for camera, assessment in latest.items():
            if assessment is None or self._seen.get(camera) == assessment.assessment_id:
                continue
            self._seen[camera] = assessment.assessment_id
            changed.append(assessment)
        for assessment in changed:
            for queue in list(self._subscribers):
                try:
                    queue.put_nowait(assessment)
                except asyncio.QueueFull:  # a stalled browser: drop it, it reconnects
                    self._subscribers.discard(queue)
        return changed

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Assessment]]:
        queue: asyncio.Queue[Assessment] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
