"""The key pool against a real Valkey, and against a real three-master Valkey Cluster (every
test taking `store` runs on both): limits hold across processes, leases expire, cooldown and
disable behave, a changed key set is picked up, and a dead Redis refuses leases."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot
from redis.exceptions import ResponseError

from activities.keypool import KeyPool, Layout
from devstack.localstack.process import free_port
from riskflow.config.keys import KeysConfig
from riskflow.errors import KeyNotInPool, KeyPoolUnavailable
from riskflow.infra.redis import RedisClient, redis_client
from tests.conftest import eventually
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


async def pool_for(store: RedisClient, config: KeysConfig) -> KeyPool:
    pool = KeyPool(store, config.scheduler)
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
async def test_limits_hold_across_processes(store: RedisClient, store_url: str) -> None:
    config = keys_config(
        {"key_id": "a", "qps_limit": 6, "rpm_limit": 1000, "max_concurrency": 4},
        {"key_id": "b", "qps_limit": 4, "rpm_limit": 14, "quota_group": "acct"},
        {"key_id": "c", "qps_limit": 4, "rpm_limit": 1000, "quota_group": "acct"},
        groups={"acct": {"qps_limit": 5, "rpm_limit": 1000}},
    )
    await pool_for(store, config)
    seconds = 4.0
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=ctx) as executor:
        futures = [
            asyncio.wrap_future(
                executor.submit(run_lessees, store_url, config.model_dump_json(), 8, seconds)
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
    store: RedisClient, store_url: str, qps: int, group_qps: int, lessees: int
) -> None:
    await store.flushdb()
    config = keys_config(
        {"key_id": "x", "qps_limit": qps, "rpm_limit": 1000, "quota_group": "g"},
        {"key_id": "y", "qps_limit": qps + 1, "rpm_limit": 1000, "quota_group": "g"},
        {"key_id": "z", "qps_limit": 2, "rpm_limit": 1000},
        groups={"g": {"qps_limit": group_qps, "rpm_limit": 1000}},
    )
    await pool_for(store, config)
    calls = await _run(store_url, config.model_dump_json(), lessees, 1.3)
    check_limits(calls, config)
    assert calls, "no call was granted at all"


async def test_expired_lease_frees_its_key(store: RedisClient) -> None:
    pool = await pool_for(
        store,
        keys_config({"key_id": "k", "qps_limit": 100, "rpm_limit": 1000, "max_concurrency": 1}),
    )
    # A lease long enough that the next call surely comes before it ends, on any machine.
    first = await pool.acquire(ttl_seconds=2.0)
    assert first.lease is not None
    blocked = await pool.acquire()
    assert blocked.lease is None and blocked.reason == "concurrency"
    assert 0 < blocked.retry_after_seconds <= 2.0

    # The holder crashed and never released: the key frees itself when the lease ends.
    async def freed() -> bool:
        return (await pool.acquire()).lease is not None

    await eventually(freed, within=20)
    assert (await pool.stamp(first.lease.lease_id)).gone


async def test_release_frees_concurrency_and_unused_slots(store: RedisClient) -> None:
    pool = await pool_for(
        store, keys_config({"key_id": "k", "qps_limit": 1, "rpm_limit": 10, "max_concurrency": 1})
    )
    lease = (await pool.acquire()).lease
    assert lease is not None
    assert await pool.release(lease.lease_id, "unused")  # never sent: the qps slot returns
    lease2 = (await pool.acquire()).lease
    assert lease2 is not None
    assert (await pool.stamp(lease2.lease_id)).granted
    await pool.release(lease2.lease_id, "ok")
    assert (await pool.acquire()).reason == "qps"


async def test_cooldown_follows_retry_after_then_escalates(store: RedisClient) -> None:
    config = keys_config(
        {"key_id": "k", "qps_limit": 100, "rpm_limit": 1000},
        key_cooldown_seconds=0.2,
        max_cooldown_seconds=0.5,
    )
    pool = await pool_for(store, config)

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
    await store.hset(f"{pool._prefix}:st:k", "strikes", 1)
    assert 0.3 < await rate_limited(None) <= 0.4  # second strike: doubled
    await store.hset(f"{pool._prefix}:st:k", mapping={"strikes": 5, "cooldown_until": 0})
    assert 0.4 < await rate_limited(None) <= 0.5  # capped
    state = (await pool.snapshot())[0]
    assert state.cooldown_remaining_ms > 0 and state.counters["rate_limited"] == 4


async def test_invalid_key_is_disabled_until_enabled(store: RedisClient) -> None:
    pool = await pool_for(store, keys_config({"key_id": "k", "qps_limit": 100, "rpm_limit": 1000}))
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


async def test_selection_follows_spare_capacity(store: RedisClient) -> None:
    pool = await pool_for(
        store,
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


async def test_sync_adds_relimits_and_removes_keys_at_run_time(store: RedisClient) -> None:
    pool = await pool_for(store, keys_config({"key_id": "k", "qps_limit": 1, "rpm_limit": 10}))
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
    dead = redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=1)
    pool = KeyPool(dead, keys_config({"key_id": "k", "qps_limit": 1, "rpm_limit": 1}).scheduler)
    with pytest.raises(KeyPoolUnavailable, match="unreachable"):
        await pool.acquire()
    with pytest.raises(KeyPoolUnavailable):
        await pool.stamp("lease")
    await dead.aclose()


async def test_a_pool_changed_by_another_process_is_picked_up(store: RedisClient) -> None:
    config = keys_config({"key_id": "k", "qps_limit": 1, "rpm_limit": 10})
    pool = await pool_for(store, config)
    assert (await pool.acquire()).lease is not None  # reads and keeps the key list
    other = KeyPool(store, config.scheduler)  # another worker, or `riskflow keys sync`
    await other.sync(
        keys_config(
            {"key_id": "k", "qps_limit": 1, "rpm_limit": 10, "quota_group": "acct"},
            {"key_id": "n", "qps_limit": 1, "rpm_limit": 10, "quota_group": "acct"},
            groups={"acct": {"qps_limit": 1, "rpm_limit": 10}},
        )
    )
    lease = (await pool.acquire()).lease  # the kept list is stale: read again, then granted
    assert lease is not None and lease.key_id == "n" and lease.quota_group == "acct"
    assert (await pool.stamp(lease.lease_id)).granted
    assert (await pool.acquire()).reason == "group_qps"  # the new group's window is declared


async def test_script_refuses_an_outdated_key_list_and_writes_nothing(store: RedisClient) -> None:
    pool = await pool_for(store, keys_config({"key_id": "k", "qps_limit": 5, "rpm_limit": 10}))
    prefix = pool._prefix
    outdated = Layout(prefix, (("k", ""), ("gone", "")))
    script = store.register_script(
        (Path(__file__).parent.parent / "activities" / "keypool.lua").read_text()
    )
    with pytest.raises(ResponseError, match=r"^STALE_KEYS"):
        await script(
            keys=outdated.names("lease-1"),
            args=[outdated.argv, "acquire", "lease-1", 1000, 0],
        )
    assert not await store.exists(f"{prefix}:lease:lease-1", f"{prefix}:w:k", f"{prefix}:inf:k")


def test_layout_declares_every_key_under_the_pool_hash_tag() -> None:
    layout = Layout("rf:kp:{pool}", (("b", "acct"), ("a", ""), ("c", "acct")))
    names = layout.names("L")
    assert names[:2] == ["rf:kp:{pool}:keys", "rf:kp:{pool}:lease:L"]
    kinds = ("cfg", "st", "w", "inf", "stats", "tw")
    assert names[2:8] == [f"rf:kp:{{pool}}:{kind}:b" for kind in kinds]
    groups = ["rf:kp:{pool}:gcfg:acct", "rf:kp:{pool}:gw:acct", "rf:kp:{pool}:gtw:acct"]
    waiting = ["guard", "wfair", "waiters", "wseen"]
    assert names[-7:] == [*groups, *(f"rf:kp:{{pool}}:{kind}" for kind in waiting)]
    assert len(names) == 2 + 3 * 6 + 3 + 4 and len({key_slot(n.encode()) for n in names}) == 1


def test_a_prefix_without_a_hash_tag_is_refused() -> None:
    client = redis_client("redis://127.0.0.1:1/0")  # never connected
    scheduler = keys_config({"key_id": "k", "qps_limit": 1, "rpm_limit": 1}).scheduler
    with pytest.raises(ValueError, match="needs a hash tag"):
        KeyPool(client, scheduler, prefix="rf:kp:pool")
    assert KeyPool(client, scheduler, prefix="tenant-a:{kp}")


def account_config() -> KeysConfig:
    """Two accounts of two keys each, and one key of no account (its own group)."""
    keys = [
        {"key_id": k, "qps_limit": 100, "rpm_limit": 1000, "quota_group": g}
        for k, g in (("a1", "acct_a"), ("a2", "acct_a"), ("b1", "acct_b"), ("b2", "acct_b"))
    ]
    groups = {g: {"qps_limit": 100, "rpm_limit": 1000} for g in ("acct_a", "acct_b")}
    solo = {"key_id": "solo", "qps_limit": 100, "rpm_limit": 1000}
    return keys_config(*keys, solo, groups=groups)


async def lease_on(pool: KeyPool, store: RedisClient, key_id: str) -> str:
    """A sent lease on `key_id` (the other keys disabled for the moment of the grant)."""
    others = [k for k in ("a1", "a2", "b1", "b2", "solo") if k != key_id]
    for other in others:
        await store.hset(f"{pool._prefix}:cfg:{other}", "enabled", 0)
    lease = (await pool.acquire()).lease
    for other in others:
        await store.hset(f"{pool._prefix}:cfg:{other}", "enabled", 1)
    assert lease is not None and lease.key_id == key_id
    assert (await pool.stamp(lease.lease_id)).granted
    return lease.lease_id


async def test_a_refused_account_disables_every_key_of_its_group_with_the_reason(
    store: RedisClient,
) -> None:
    pool = await pool_for(store, account_config())
    reason = "account refused: Arrearage: Access denied, please make sure your account is ok"
    await pool.release(await lease_on(pool, store, "a2"), "account_refused", detail=reason)
    await pool.release(await lease_on(pool, store, "solo"), "account_refused", detail="no acct")
    states = {s.key_id: s for s in await pool.snapshot()}
    assert {k for k, s in states.items() if not s.enabled} == {"a1", "a2", "solo"}
    assert states["a1"].disabled_reason == states["a2"].disabled_reason == reason
    assert states["solo"].disabled_reason == "no acct"
    granted = {(await pool.acquire()).lease.key_id for _ in range(4)}  # type: ignore[union-attr]
    assert granted == {"b1", "b2"}


async def test_an_account_scoped_429_cools_the_whole_group_and_a_key_scoped_one_the_key(
    store: RedisClient,
) -> None:
    pool = await pool_for(store, account_config())
    await pool.release(
        await lease_on(pool, store, "a1"), "rate_limited_group", retry_after_seconds=30
    )
    await pool.release(await lease_on(pool, store, "b1"), "rate_limited", retry_after_seconds=30)
    states = {s.key_id: s for s in await pool.snapshot()}
    cooling = {k for k, s in states.items() if s.cooldown_remaining_ms > 20_000}
    assert cooling == {"a1", "a2", "b1"}
    assert all(s.enabled for s in states.values())


async def test_stamp_refuses_a_lease_that_would_expire_before_the_call_ends(
    store: RedisClient,
) -> None:
    pool = await pool_for(store, keys_config({"key_id": "k", "qps_limit": 100, "rpm_limit": 1000}))
    lease = (await pool.acquire(ttl_seconds=10)).lease
    assert lease is not None
    refused = await pool.stamp(lease.lease_id, needed_seconds=35)
    assert refused.gone and "expires before" in refused.reason
    assert await pool.release(lease.lease_id, "unused")
    lease = (await pool.acquire(ttl_seconds=120)).lease
    assert lease is not None and (await pool.stamp(lease.lease_id, needed_seconds=35)).granted


async def test_a_retry_after_of_zero_means_at_once_not_the_pools_backoff(
    store: RedisClient,
) -> None:
    config = keys_config({"key_id": "k", "qps_limit": 100, "rpm_limit": 1000})
    pool = await pool_for(store, config)
    lease = (await pool.acquire()).lease
    assert lease is not None and (await pool.stamp(lease.lease_id)).granted
    await pool.release(lease.lease_id, "rate_limited", retry_after_seconds=0.0)
    assert (await pool.acquire()).lease is not None


async def test_an_unknown_key_id_is_refused_and_creates_nothing(store: RedisClient) -> None:
    pool = await pool_for(store, keys_config({"key_id": "key_2", "qps_limit": 1, "rpm_limit": 10}))
    for reason in ("disabled by operator", None):
        with pytest.raises(KeyNotInPool, match="'key2'"):
            await pool.set_disabled("key2", reason)  # a typo of key_2
    assert not await store.exists(f"{pool._prefix}:st:key2")
    assert all(state.enabled for state in await pool.snapshot())


async def test_a_rate_limit_the_windows_did_not_foresee_widens_them_for_every_worker(
    store: RedisClient,
) -> None:
    """Six 429s for the rate double the guard from 0 to 640 ms, and another worker's pool
    counts a 1 call/s key's window that much longer: the next call is due 1640 ms after the
    last send, on Redis' clock (bracketed by reading it before and after asking)."""
    config = keys_config(
        {"key_id": "hot", "qps_limit": 100, "rpm_limit": 6000},
        {"key_id": "slow", "qps_limit": 1, "rpm_limit": 60},
        max_window_guard_ms=3000,
    )
    pool, other = await pool_for(store, config), KeyPool(store, config.scheduler)
    assert await other.window_guard_ms() == 0
    for _ in range(6):
        lease = (await pool.acquire(quota_groups=["key:hot"])).lease
        assert lease is not None and (await pool.stamp(lease.lease_id)).granted
        await pool.release(lease.lease_id, "rate_limited", retry_after_seconds=0)
    assert await other.window_guard_ms() == 640
    lease = (await pool.acquire(quota_groups=["key:slow"])).lease
    assert lease is not None
    sent = await pool.stamp(lease.lease_id)
    assert sent.granted
    await pool.release(lease.lease_id, "ok")
    before = await pool._now_ms()
    refused = await other.acquire(quota_groups=["key:slow"])
    after = await pool._now_ms()
    assert refused.lease is None and refused.reason == "qps"
    wait_ms = round(refused.retry_after_seconds * 1000)
    assert before + wait_ms <= sent.sent_at_ms + 1000 + 640 <= after + wait_ms


async def test_the_raised_guard_falls_back_to_the_configured_one(store: RedisClient) -> None:
    config = keys_config(
        {"key_id": "k", "qps_limit": 100, "rpm_limit": 6000},
        window_guard_ms=20,
        window_guard_halving_seconds=0.01,
    )
    pool = await pool_for(store, config)
    lease = (await pool.acquire()).lease
    assert lease is not None and (await pool.stamp(lease.lease_id)).granted
    await pool.release(lease.lease_id, "rate_limited", retry_after_seconds=0)
    assert await pool.window_guard_ms() <= 40
    await asyncio.sleep(0.5)  # fifty halvings at least
    assert await pool.window_guard_ms() == 20


async def test_one_burst_of_429s_raises_the_guard_once(store: RedisClient) -> None:
    """Two requests sent under the same guard, both answered 429: one doubling, not two (the
    second was judged by the guard the first one already raised)."""
    config = keys_config({"key_id": "k", "qps_limit": 100, "rpm_limit": 6000})
    pool = await pool_for(store, config)
    leases = [(await pool.acquire()).lease for _ in range(2)]
    for lease in leases:
        assert lease is not None and (await pool.stamp(lease.lease_id)).granted
    for lease in leases:
        assert lease is not None
        await pool.release(lease.lease_id, "rate_limited", retry_after_seconds=0)
    assert await pool.window_guard_ms() == 20
