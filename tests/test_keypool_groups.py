"""Leases restricted to quota groups (a failover entry's accounts), on a single Valkey and on a
Valkey Cluster (`store` runs both)."""

from __future__ import annotations

from riskflow.infra.redis import RedisClient
from tests.test_keypool import account_config, lease_on, pool_for


async def test_a_lease_comes_only_from_the_wanted_quota_groups(store: RedisClient) -> None:
    pool = await pool_for(store, account_config())
    for groups, allowed in (
        (["acct_b"], {"b1", "b2"}),
        (["key:solo"], {"solo"}),
        (["acct_a", "key:solo"], {"a1", "a2", "solo"}),
        ([], {"a1", "a2", "b1", "b2", "solo"}),
    ):
        for _ in range(3):
            result = await pool.acquire(quota_groups=groups)
            assert result.lease is not None and result.lease.key_id in allowed, groups
            await pool.release(result.lease.lease_id, "unused")


async def test_a_wanted_group_with_every_key_disabled_answers_never(store: RedisClient) -> None:
    """-1: the failover chain's cue to move on at once, while other groups still lease."""
    pool = await pool_for(store, account_config())
    await pool.release(await lease_on(pool, store, "b1"), "account_refused", detail="arrears")
    result = await pool.acquire(quota_groups=["acct_b"])
    assert result.lease is None and result.retry_after_seconds == -1.0
    assert (await pool.acquire(quota_groups=["acct_a"])).lease is not None
    unknown = await pool.acquire(quota_groups=["no_such_group"])
    assert unknown.lease is None and unknown.retry_after_seconds == -1.0
