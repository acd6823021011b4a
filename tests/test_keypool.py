"""The key pool against a real Valkey: limits hold across processes, leases expire,
cooldown and disable behave, and a dead Redis refuses leases."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from activities.keypool import KeyPool
from riskflow.devstack.localstack.process import free_port
from riskflow.endpoints import Endpoints
from riskflow.errors import KeyPoolUnavailable
from riskflow.keyconfig import KeysConfig
from tests.keypool_load import _run, max_in_window, run_lessees


def keys_config(
    *keys: dict[str, object], groups: dict[str, object] | None = None, **sched: object
) -> KeysConfig:
    entries = [{"key": f"sk-{k['key_id']}", **k} for k in keys]
    return KeysConfig.model_validate(
        {
            "api_keys": entries,
            "quota_groups": groups or {},
            "scheduler": {"window_guard_ms": 0, **sched},
        }
    )


async def pool_for(redis: Redis, config: KeysConfig) -> KeyPool:
    pool = KeyPool(redis, config.scheduler)
    await pool.sync(config)
    return pool


def check_limits(calls: list[tuple[str, str, int]], config: KeysConfig) -> None:
    by_key: dict[str, list[int]] = defaultdict(list)
    by_group: dict[str, list[int]] = defaultdict(list)
    for key_id, group, at in calls:
        by_key[key_id].append(at)
        if group:
            by_group[group].append(at)
    for key in config.api_keys:
        assert max_in_window(by_key[key.key_id], 1000) <= key.qps_limit, key.key_id
        assert max_in_window(by_key[key.key_id], 60_000) <= key.rpm_limit, key.key_id
    for name, group in config.quota_groups.items():
        assert max_in_window(by_group[name], 1000) <= group.qps_limit, name
        assert max_in_window(by_group[name], 60_000) <= group.rpm_limit, name


@pytest.mark.slow
async def test_limits_hold_across_processes(redis: Redis, stack: Endpoints) -> None:
    config = keys_config(
        {"key_id": "a", "qps_limit": 6, "rpm_limit": 1000, "max_concurrency": 4},
        {"key_id": "b", "qps_limit": 4, "rpm_limit": 14, "quota_group": "acct"},
        {"key_id": "c", "qps_limit": 4, "rpm_limit": 1000, "quota_group": "acct"},
        groups={"acct": {"qps_limit": 5, "rpm_limit": 1000}},
    )
    await pool_for(redis, config)
    seconds = 4.0
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=ctx) as executor:
        futures = [
            asyncio.wrap_future(
                executor.submit(run_lessees, stack.redis, config.model_dump_json(), 8, seconds)
            )
            for _ in range(3)
        ]
        results = await asyncio.gather(*futures)
    calls = [c for result in results for c in result]
    check_limits(calls, config)
    counts = defaultdict(int)
    for key_id, _, _ in calls:
        counts[key_id] += 1
    # Capacity is used, not just respected: key a at 6/s; b+c share the group's 5/s.
    assert counts["a"] >= 6 * seconds * 0.8
    assert counts["b"] + counts["c"] >= 5 * seconds * 0.8
    assert counts["b"] <= 14


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    qps=st.integers(min_value=1, max_value=8),
    group_qps=st.integers(min_value=1, max_value=10),
    lessees=st.integers(min_value=1, max_value=12),
)
async def test_random_limits_are_never_exceeded(
    redis: Redis, stack: Endpoints, qps: int, group_qps: int, lessees: int
) -> None:
    await redis.flushdb()
    config = keys_config(
        {"key_id": "x", "qps_limit": qps, "rpm_limit": 1000, "quota_group": "g"},
        {"key_id": "y", "qps_limit": qps + 1, "rpm_limit": 1000, "quota_group": "g"},
        {"key_id": "z", "qps_limit": 2, "rpm_limit": 1000},
        groups={"g": {"qps_limit": group_qps, "rpm_limit": 1000}},
    )
    await pool_for(redis, config)
    calls = await _run(stack.redis, config.model_dump_json(), lessees, 1.3)
    check_limits(calls, config)
    assert calls, "no call was granted at all"


async def test_expired_lease_frees_its_key(redis: Redis) -> None:
    pool = await pool_for(
        redis,
        keys_config({"key_id": "k", "qps_limit": 100, "rpm_limit": 1000, "max_concurrency": 1}),
    )
    first = await pool.acquire(ttl_seconds=0.3)
    assert first.lease is not None
    blocked = await pool.acquire()
    assert blocked.lease is None and blocked.reason == "concurrency"
    assert 0 < blocked.retry_after_seconds <= 0.3
    await asyncio.sleep(0.35)  # the holder crashed and never released
    again = await pool.acquire()
    assert again.lease is not None
    assert (await pool.stamp(first.lease.lease_id)).gone


async def test_release_frees_concurrency_and_unused_slots(redis: Redis) -> None:
    pool = await pool_for(
        redis, keys_config({"key_id": "k", "qps_limit": 1, "rpm_limit": 10, "max_concurrency": 1})
    )
    lease = (await pool.acquire()).lease
    assert lease is not None
    assert await pool.release(lease.lease_id, "unused")  # never sent: the qps slot returns
    lease2 = (await pool.acquire()).lease
    assert lease2 is not None
    assert (await pool.stamp(lease2.lease_id)).granted
    await pool.release(lease2.lease_id, "ok")
    assert (await pool.acquire()).reason == "qps"


async def test_cooldown_follows_retry_after_then_escalates(redis: Redis) -> None:
    config = keys_config(
        {"key_id": "k", "qps_limit": 100, "rpm_limit": 1000},
        key_cooldown_seconds=0.2,
        max_cooldown_seconds=0.5,
    )
    pool = await pool_for(redis, config)

    async def rate_limited(retry_after: float | None) -> float:
        lease = (await pool.acquire()).lease
        assert lease is not None
        await pool.stamp(lease.lease_id)
        await pool.release(lease.lease_id, "rate_limited", retry_after_seconds=retry_after)
        result = await pool.acquire()
        assert result.lease is None and result.reason == "cooling"
        return result.retry_after_seconds

    assert 1.5 < await rate_limited(2.0) <= 2.0  # Retry-After wins
    await pool.set_disabled("k", None)  # an operator clears the cooldown
    assert 0.1 < await rate_limited(None) <= 0.2  # first strike: base
    await pool.set_disabled("k", None)
    await redis.hset(f"{pool._prefix}:st:k", "strikes", 1)
    assert 0.3 < await rate_limited(None) <= 0.4  # second strike: doubled
    await redis.hset(f"{pool._prefix}:st:k", mapping={"strikes": 5, "cooldown_until": 0})
    assert 0.4 < await rate_limited(None) <= 0.5  # capped
    state = (await pool.snapshot())[0]
    assert state.cooldown_remaining_ms > 0 and state.counters["rate_limited"] == 4


async def test_invalid_key_is_disabled_until_enabled(redis: Redis) -> None:
    pool = await pool_for(redis, keys_config({"key_id": "k", "qps_limit": 100, "rpm_limit": 1000}))
    lease = (await pool.acquire()).lease
    assert lease is not None
    await pool.release(lease.lease_id, "invalid_key", detail="invalid key: InvalidApiKey")
    result = await pool.acquire()
    assert (
        result.lease is None
        and result.retry_after_seconds == -1
        and result.reason == "all keys disabled"
    )
    (state,) = await pool.snapshot()
    assert not state.enabled and state.disabled_reason == "invalid key: InvalidApiKey"
    await pool.set_disabled("k", None)
    assert (await pool.acquire()).lease is not None


async def test_selection_follows_spare_capacity(redis: Redis) -> None:
    pool = await pool_for(
        redis,
        keys_config(
            {"key_id": "big", "qps_limit": 9, "rpm_limit": 1000, "max_concurrency": 20},
            {"key_id": "small", "qps_limit": 3, "rpm_limit": 1000},
        ),
    )
    granted = []
    for _ in range(12):
        lease = (await pool.acquire()).lease
        assert lease is not None
        granted.append(lease.key_id)
    assert granted.count("big") == 9 and granted.count("small") == 3
    assert granted[:2] in (["big", "small"], ["small", "big"])  # spread, not filled in turn


async def test_sync_adds_relimits_and_removes_keys_at_run_time(redis: Redis) -> None:
    pool = await pool_for(redis, keys_config({"key_id": "k", "qps_limit": 1, "rpm_limit": 10}))
    assert (await pool.acquire()).lease is not None
    assert (await pool.acquire()).lease is None
    await pool.sync(
        keys_config(
            {"key_id": "k", "qps_limit": 3, "rpm_limit": 10},
            {"key_id": "n", "qps_limit": 1, "rpm_limit": 10},
        )
    )
    assert {(await pool.acquire()).lease.key_id for _ in range(3)} == {"k", "n"}  # type: ignore[union-attr]
    await pool.sync(keys_config({"key_id": "n", "qps_limit": 1, "rpm_limit": 10, "enabled": False}))
    assert [s.key_id for s in await pool.snapshot()] == ["n"]
    result = await pool.acquire()
    assert result.lease is None and result.reason == "all keys disabled"


async def test_redis_down_refuses_leases() -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    pool = KeyPool(dead, keys_config({"key_id": "k", "qps_limit": 1, "rpm_limit": 1}).scheduler)
    with pytest.raises(KeyPoolUnavailable, match="unreachable"):
        await pool.acquire()
    with pytest.raises(KeyPoolUnavailable):
        await pool.stamp("lease")
    await dead.aclose()


def account_config() -> KeysConfig:
    """Two accounts of two keys each, and one key of no account (its own group)."""
    keys = [
        {"key_id": k, "qps_limit": 100, "rpm_limit": 1000, "quota_group": g}
        for k, g in (("a1", "acct_a"), ("a2", "acct_a"), ("b1", "acct_b"), ("b2", "acct_b"))
    ]
    groups = {g: {"qps_limit": 100, "rpm_limit": 1000} for g in ("acct_a", "acct_b")}
    solo = {"key_id": "solo", "qps_limit": 100, "rpm_limit": 1000}
    return keys_config(*keys, solo, groups=groups)


async def lease_on(pool: KeyPool, redis: Redis, key_id: str) -> str:
    """A sent lease on `key_id` (the other keys disabled for the moment of the grant)."""
    others = [k for k in ("a1", "a2", "b1", "b2", "solo") if k != key_id]
    for other in others:
        await redis.hset(f"{pool._prefix}:cfg:{other}", "enabled", 0)
    lease = (await pool.acquire()).lease
    for other in others:
        await redis.hset(f"{pool._prefix}:cfg:{other}", "enabled", 1)
    assert lease is not None and lease.key_id == key_id
    assert (await pool.stamp(lease.lease_id)).granted
    return lease.lease_id


async def test_a_refused_account_disables_every_key_of_its_group_with_the_reason(
    redis: Redis,
) -> None:
    pool = await pool_for(redis, account_config())
    reason = "account refused: Arrearage: Access denied, please make sure your account is ok"
    await pool.release(await lease_on(pool, redis, "a2"), "account_refused", detail=reason)
    await pool.release(await lease_on(pool, redis, "solo"), "account_refused", detail="no acct")
    states = {s.key_id: s for s in await pool.snapshot()}
    assert {k for k, s in states.items() if not s.enabled} == {"a1", "a2", "solo"}
    assert states["a1"].disabled_reason == states["a2"].disabled_reason == reason
    assert states["solo"].disabled_reason == "no acct"
    granted = {(await pool.acquire()).lease.key_id for _ in range(4)}  # type: ignore[union-attr]
    assert granted == {"b1", "b2"}


async def test_an_account_scoped_429_cools_the_whole_group_and_a_key_scoped_one_the_key(
    redis: Redis,
) -> None:
    pool = await pool_for(redis, account_config())
    await pool.release(
        await lease_on(pool, redis, "a1"), "rate_limited_group", retry_after_seconds=30
    )
    await pool.release(await lease_on(pool, redis, "b1"), "rate_limited", retry_after_seconds=30)
    states = {s.key_id: s for s in await pool.snapshot()}
    cooling = {k for k, s in states.items() if s.cooldown_remaining_ms > 20_000}
    assert cooling == {"a1", "a2", "b1"}
    assert all(s.enabled for s in states.values())


async def test_stamp_refuses_a_lease_that_would_expire_before_the_call_ends(
    redis: Redis,
) -> None:
    pool = await pool_for(redis, keys_config({"key_id": "k", "qps_limit": 100, "rpm_limit": 1000}))
    lease = (await pool.acquire(ttl_seconds=10)).lease
    assert lease is not None
    refused = await pool.stamp(lease.lease_id, needed_seconds=35)
    assert refused.gone and "expires before" in refused.reason
    assert await pool.release(lease.lease_id, "unused")
    lease = (await pool.acquire(ttl_seconds=120)).lease
    assert lease is not None and (await pool.stamp(lease.lease_id, needed_seconds=35)).granted


async def test_a_retry_after_of_zero_means_at_once_not_the_pools_backoff(redis: Redis) -> None:
    config = keys_config({"key_id": "k", "qps_limit": 100, "rpm_limit": 1000})
    pool = await pool_for(redis, config)
    lease = (await pool.acquire()).lease
    assert lease is not None and (await pool.stamp(lease.lease_id)).granted
    await pool.release(lease.lease_id, "rate_limited", retry_after_seconds=0.0)
    assert (await pool.acquire()).lease is not None
