"""Lessees hammering the key pool: run in several processes by the key pool tests and bench."""

from __future__ import annotations

import asyncio
import time

from activities.keypool import KeyPool
from riskflow.config.keys import KeysConfig
from riskflow.infra.redis import redis_client

Call = tuple[str, str, int]  # key id, quota group, sent at (Redis ms)


async def _lessee(pool: KeyPool, until: float, calls: list[Call]) -> None:
    while time.monotonic() < until:
        result = await pool.acquire()
        if result.lease is None:
            await asyncio.sleep(
                min(max(result.retry_after_seconds, 0.001), until - time.monotonic(), 1.0)
            )
            continue
        lease = result.lease
        while True:
            stamp = await pool.stamp(lease.lease_id)
            if stamp.granted:
                await asyncio.sleep(stamp.wait_ms / 1000)  # the booked send slot
                calls.append((lease.key_id, lease.quota_group, stamp.sent_at_ms))
                await pool.release(lease.lease_id, "ok")
                break
            if stamp.gone or time.monotonic() >= until:
                await pool.release(lease.lease_id, "unused")
                break
            await asyncio.sleep(stamp.wait_ms / 1000)


async def _run(redis_url: str, config_json: str, lessees: int, seconds: float) -> list[Call]:
    redis = redis_client(redis_url)
    config = KeysConfig.model_validate_json(config_json)
    pool = KeyPool(redis, config.scheduler)
    calls: list[Call] = []
    until = time.monotonic() + seconds
    try:
        await asyncio.gather(*(_lessee(pool, until, calls) for _ in range(lessees)))
    finally:
        await redis.aclose()
    return calls


def run_lessees(redis_url: str, config_json: str, lessees: int, seconds: float) -> list[Call]:
    """Entry point for a child process."""
    return asyncio.run(_run(redis_url, config_json, lessees, seconds))


def max_in_window(times_ms: list[int], width_ms: int) -> int:
    """The most calls in any window [t, t + width) of the sorted call times."""
    times = sorted(times_ms)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= width_ms:
            start += 1
        best = max(best, end - start + 1)
    return best
