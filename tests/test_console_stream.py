"""The console's live stream (`/api/events`) with a browser that falls behind: a real HTTP
client with a small receive buffer that reads nothing while camera tiles change. Its stream
is ended (never silently skipped while its connection stays open), so an EventSource
reconnects and reloads; counted in `riskflow_console_streams_dropped_total`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment
from riskflow.infra.endpoints import Endpoints
from riskflow.levels import RiskLevel
from riskflow.names import camera_latest_key
from tests.console_server import VIEWER_TOKEN, RunningConsole, console_settings, running_console

BEARER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
# Small, but above the loopback MSS (64 KiB): a receive buffer below it stalls a sender for
# minutes once the reader resumes (silly-window avoidance, persist-timer backoff).
SMALL_BUFFER = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)]
MAX_ROUNDS = 400  # 100 cameras x about 2.3 KiB each: far more than any socket buffers


def dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value("riskflow_console_streams_dropped_total", {"reason": reason})
    return value or 0.0


def latest(camera: str, n: int) -> Assessment:
    now = datetime.now(UTC)
    return Assessment(
        assessment_id=f"risk-{camera}-{n}",
        camera_id=camera,
        situation="fall",
        status="assessed",
        captured_at=now,
        captured_ms=int(now.timestamp() * 1000),
        assessed_at=now,
        frame_id=n,
        risk_level=RiskLevel.HIGH,
        risk_score=80,
        summary=f"round {n}: " + "x" * 1990,
        key_id="key_1",
    )


async def change_until(redis: Redis, cameras: list[str], reason: str, before: float) -> None:
    """New latest assessments for every camera, round after round, until the console has
    dropped a stream for `reason` (at most MAX_ROUNDS rounds)."""
    for n in range(MAX_ROUNDS):
        async with redis.pipeline(transaction=False) as pipe:
            for camera in cameras:
                pipe.set(camera_latest_key(camera), latest(camera, n).model_dump_json())
            await pipe.execute()
        if dropped(reason) > before:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no stream dropped ({reason}) after {MAX_ROUNDS} rounds of changes")


@pytest.fixture
async def slow_client(stack: Endpoints) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(socket_options=SMALL_BUFFER)
    async with httpx.AsyncClient(transport=transport, timeout=60) as client:
        yield client


def serve(
    settings: Settings, cameras: list[str], queue: int, send_timeout: float
) -> contextlib.AbstractContextManager[RunningConsole]:
    return running_console(
        console_settings(
            settings, cameras, stream_queue_size=queue, stream_send_timeout_seconds=send_timeout
        )
    )


async def read_to_the_end(response: httpx.Response) -> bytes:
    """Everything the stream still sends, until it ends (a clean end of the chunked body,
    or the connection closed under it)."""
    body = b""
    try:
        async for chunk in response.aiter_raw():
            body += chunk
    except (httpx.RemoteProtocolError, httpx.ReadError):
        pass
    return body


@pytest.mark.timeout(180)
async def test_a_browser_that_falls_a_queue_behind_is_disconnected_not_skipped(
    settings: Settings, stack: Endpoints, redis: Redis, slow_client: httpx.AsyncClient
) -> None:
    cameras = [f"slow-{uuid.uuid4().hex[:8]}-{i}" for i in range(100)]
    before, timeouts = dropped("queue_full"), dropped("send_timeout")
    with serve(settings, cameras, queue=20, send_timeout=600) as console:
        url = f"{console.url}/api/events"
        async with slow_client.stream("GET", url, headers=BEARER) as response:
            assert response.status_code == 200
            await change_until(redis, cameras, "queue_full", before)  # reading nothing
            body = await asyncio.wait_for(read_to_the_end(response), 60)
        assert body.startswith(b"event: hello") and b"event: tile" in body
        assert dropped("queue_full") == before + 1 and dropped("send_timeout") == timeouts
        # Its EventSource reconnects: a new stream, from now on.
        async with slow_client.stream("GET", url, headers=BEARER) as again:
            first = await anext(again.aiter_raw())
        assert first.startswith(b"event: hello")


@pytest.mark.timeout(180)
async def test_a_browser_that_reads_nothing_at_all_is_disconnected_after_the_send_timeout(
    settings: Settings, stack: Endpoints, redis: Redis, slow_client: httpx.AsyncClient
) -> None:
    cameras = [f"stuck-{uuid.uuid4().hex[:8]}-{i}" for i in range(100)]
    before, full = dropped("send_timeout"), dropped("queue_full")
    # A queue it never fills: only the blocked send can end this stream.
    with serve(settings, cameras, queue=1_000_000, send_timeout=1.0) as console:
        async with slow_client.stream("GET", f"{console.url}/api/events", headers=BEARER) as r:
            await change_until(redis, cameras, "send_timeout", before)  # reading nothing
            body = await asyncio.wait_for(read_to_the_end(r), 60)
    assert body.startswith(b"event: hello") and b"event: tile" in body
    assert dropped("send_timeout") == before + 1 and dropped("queue_full") == full
