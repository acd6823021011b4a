"""Severity first at a saturated key (`store`: single Valkey and Cluster): a waiting critical
assessment holds back less severe ones, and the capacity share reserved for the most severe is
refused to the rest."""

from __future__ import annotations

import asyncio

from activities.keypool import KeyPool
from riskflow.redis_client import RedisClient
from tests.test_keypool import keys_config, pool_for

CRITICAL, LOW = 5, 1


async def _pool(store: RedisClient, qps: int, share: float = 0.0) -> KeyPool:
    return await pool_for(
        store,
        keys_config(
            {"key_id": "k", "qps_limit": qps, "rpm_limit": 1000, "max_concurrency": 100},
            severity_first=True,
            reserved_share=share,
            reserved_min_severity=CRITICAL,
        ),
    )


async def _granted(pool: KeyPool, waiter: str, severity: int) -> bool:
    result = await pool.acquire(waiter=waiter, severity=severity)
    return result.lease is not None


async def test_the_reserved_share_is_kept_for_the_most_severe(store: RedisClient) -> None:
    pool = await _pool(store, qps=10, share=0.3)
    low = [await _granted(pool, f"low-{i}", LOW) for i in range(10)]
    assert low.count(True) == 7  # 70% of the second's 10 calls
    refused = await pool.acquire(waiter="low-x", severity=LOW)
    assert refused.lease is None and refused.reason == "reserved"
    critical = [await _granted(pool, f"crit-{i}", CRITICAL) for i in range(4)]
    assert critical == [True, True, True, False]  # the reserved 3, then the limit


async def test_a_waiting_critical_assessment_is_served_before_low_ones(store: RedisClient) -> None:
    pool = await _pool(store, qps=2)
    assert await _granted(pool, "low-0", LOW) and await _granted(pool, "low-1", LOW)
    # Saturated: both ask and wait; the critical one is recorded as waiting.
    assert not await _granted(pool, "crit", CRITICAL)
    assert not await _granted(pool, "low-2", LOW)
    await asyncio.sleep(1.1)  # the second's window frees
    first = await pool.acquire(waiter="low-2", severity=LOW)  # the low one asks first ...
    assert first.lease is None and first.reason == "priority"
    assert await _granted(pool, "crit", CRITICAL)  # ... the critical one gets the key
    assert await _granted(pool, "low-2", LOW)  # and then the low one


async def test_a_critical_waiter_that_stopped_asking_holds_nobody_back(store: RedisClient) -> None:
    pool = await pool_for(
        store,
        keys_config(
            {"key_id": "k", "qps_limit": 1, "rpm_limit": 1000},
            severity_first=True,
            waiter_ttl_seconds=0.5,
        ),
    )
    assert await _granted(pool, "low-0", LOW)
    assert not await _granted(pool, "crit", CRITICAL)  # gives up, never asks again
    await asyncio.sleep(1.1)
    assert await _granted(pool, "low-1", LOW)
