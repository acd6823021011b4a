"""Live camera tiles and incident list: one poller per console process reads
`camera:{id}:latest`, each camera's open-incident count and the open incidents' views, and
hands every change to the browsers' server-sent-event streams (`TileChange`, or
`INCIDENTS_CHANGED` when any incident opened, changed or closed: `INCIDENT_CHANGES` moved).

Each stream has a bounded queue (`console.stream_queue_size`). A browser that falls that far
behind is not skipped (its stream would stay open and silently stop updating): its queue is
emptied and given `DROPPED`, the stream ends there, and the browser's EventSource reconnects
and reloads the page's state (`riskflow_console_streams_dropped_total{reason="queue_full"}`).

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
from dataclasses import dataclass

from redis.exceptions import RedisError

from console.data import discover_cameras, read_latest
from console.incidents import open_incident_counts
from riskflow.config.console import ConsoleSettings
from riskflow.contracts.assessment import Assessment
from riskflow.infra.metrics import CONSOLE_STREAMS_DROPPED
from riskflow.infra.redis import RedisClient
from riskflow.names import INCIDENT_CHANGES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileChange:
    """A camera whose latest assessment or open-incident count changed."""

    camera_id: str
    latest: Assessment | None
    open_incidents: int


INCIDENTS_CHANGED = "incidents"
Change = TileChange | str


class Dropped:
    """The last item of a stream that fell `console.stream_queue_size` changes behind."""


DROPPED = Dropped()
Item = Change | Dropped


class LiveTiles:
    """Polls Redis; `subscribe()` yields the camera ids' new latest assessments as they come."""

    def __init__(self, redis: RedisClient, configured: list[str], settings: ConsoleSettings):
        self._redis = redis
        self._settings = settings
        self.cameras: list[str] = list(dict.fromkeys(configured))
        self._configured = set(self.cameras)
        self._seen: dict[str, tuple[str, int]] = {}
        self._incidents = ""
        self._subscribers: set[asyncio.Queue[Item]] = set()
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

    async def poll(self) -> list[Change]:
        """Read every camera's latest and open count, and the open incidents, once; publish
        and return what changed."""
        latest = await read_latest(self._redis, self.cameras)
        counts = await open_incident_counts(self._redis, self.cameras)
        changed: list[Change] = []
        for camera, assessment in latest.items():
            seen = (assessment.assessment_id if assessment else "", counts.get(camera, 0))
            if self._seen.get(camera, ("", 0)) == seen:
                continue
            self._seen[camera] = seen
            changed.append(TileChange(camera, assessment, seen[1]))
        fingerprint = await self._incident_fingerprint()
        if fingerprint != self._incidents:
            self._incidents = fingerprint
            changed.append(INCIDENTS_CHANGED)
        for change in changed:
            for queue in list(self._subscribers):
                try:
                    queue.put_nowait(change)
                except asyncio.QueueFull:
                    self._drop(queue)
        return changed

    def _drop(self, queue: asyncio.Queue[Item]) -> None:
        """A browser this far behind: what it has not taken is stale anyway, so its queue is
        emptied and ends with `DROPPED`; the stream ends there and the browser reconnects."""
        self._subscribers.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(DROPPED)
        CONSOLE_STREAMS_DROPPED.labels(reason="queue_full").inc()
        logger.info("a live stream fell %d changes behind: ended", queue.maxsize)

    async def _incident_fingerprint(self) -> str:
        """The incident views' change counter (`INCIDENT_CHANGES`, raised by every applied
        write): it moves when an incident opens, changes state, is assessed or closes."""
        return _text(await self._redis.get(INCIDENT_CHANGES) or b"")

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Item]]:
        """A queue of the changes from now on; `DROPPED` ends it (see the module). It holds
        one poll's worth (every camera and the incident list) on top of
        `stream_queue_size`: a poll hands its changes over at once."""
        size = self._settings.stream_queue_size + len(self.cameras) + 1
        queue: asyncio.Queue[Item] = asyncio.Queue(size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
