"""The one Redis client factory: URL schemes, and the minimum server version checked at start
(against the real Valkey and the real three-master Valkey Cluster)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    MaxConnectionsError,
    ReadOnlyError,
    RedisClusterException,
    RedisClusterUnreachableError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from riskflow.config.loader import load_settings
from riskflow.config.redis import parse_cluster_url
from riskflow.config.settings import Settings
from riskflow.errors import ConfigError, StoreVersionError
from riskflow.infra.redis import (
    check_server_version,
    redis_client,
    require_supported,
    store_outage,
)
from tests.conftest import CONFIG, cli_env


def test_cluster_url_lists_its_nodes_credentials_and_tls() -> None:
    assert parse_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001") == (
        [("10.0.0.1", 7000), ("10.0.0.2", 7001)],
        None,
        None,
        False,
    )
    assert parse_cluster_url("rediss+cluster://app:s%40cret@cache.internal/0") == (
        [("cache.internal", 6379)],
        "app",
        "s@cret",
        True,
    )
    assert parse_cluster_url("redis+cluster://[::1]:7000")[0] == [("::1", 7000)]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+cluster://a:7000/1", "only database 0"),
        ("redis+cluster://a:70000", "not host:port"),
        ("redis+cluster://a:x", "not host:port"),
        ("redis+cluster://", "at least one node"),
    ],
)
def test_bad_cluster_urls_are_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_cluster_url(url)


def test_the_url_scheme_chooses_the_client() -> None:
    assert isinstance(redis_client("redis://127.0.0.1:6379/0"), Redis)
    assert isinstance(redis_client("redis+cluster://127.0.0.1:7000"), RedisCluster)


@pytest.mark.parametrize(
    ("info", "name"),
    [
        ({"redis_version": "7.2.4", "valkey_version": "8.1.1"}, "Valkey 8.1.1"),
        ({"redis_version": "5.0.14"}, "Redis 5.0.14"),
        ({"redis_version": "7.4.2"}, "Redis 7.4.2"),
    ],
)
def test_supported_servers(info: dict[str, object], name: str) -> None:
    assert require_supported(info) == name


@pytest.mark.parametrize("version", ["4.0.14", "3.2.12"])
def test_servers_without_script_effects_replication_are_refused(version: str) -> None:
    with pytest.raises(StoreVersionError, match=rf"Redis {version}.*Redis >= 5\.0"):
        require_supported({"redis_version": version})


async def test_the_real_servers_pass_the_start_check(store_url: str) -> None:
    client = redis_client(store_url, timeout_seconds=5)
    try:
        assert (await check_server_version(client)).startswith("Valkey ")
    finally:
        await client.aclose()


def test_a_bad_cluster_url_stops_settings_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match=r"redis_url.*'h:x' is not host:port"):
        load_settings(CONFIG, redis_url="redis+cluster://h:x")


async def test_keys_cli_runs_on_the_cluster(settings: Settings, cluster_url: str) -> None:
    env = {**cli_env(settings), "RISKFLOW_REDIS_URL": cluster_url, "COLUMNS": "160"}

    async def cli(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "keys", *args,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out.decode()
        return out.decode()

    await cli("sync")
    await cli("disable", "key_1")
    status = await cli("status")
    assert "key_1" in status and "disabled by operator" in status and "key_2" in status


async def test_the_cluster_fixture_is_a_real_three_master_cluster(cluster_url: str) -> None:
    """What the Cluster tests rely on: three masters, and slots enforced (before riskflow
    declared its keys, its scripts failed here in exactly these two ways)."""
    client = redis_client(cluster_url)
    try:
        await client.initialize()
        assert len(client.get_primaries()) == 3
        assert len({client.keyslot(k) for k in ("camera:1:latest", "alerts:1")}) == 2
        with pytest.raises(RedisClusterException, match="same key slot"):
            await client.eval("return 1", 2, "camera:1:latest", "alerts:1")
        # A script run where the first declared key lives, touching a key of another node.
        home = client.get_node_from_key("alerts:1")
        elsewhere = next(
            k for k in (f"k{i}" for i in range(100)) if client.get_node_from_key(k) != home
        )
        with pytest.raises(ResponseError, match="non local key"):
            await client.eval("return redis.call('GET', ARGV[1])", 1, "alerts:1", elsewhere)
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (RedisConnectionError("Connection refused"), True),
        (RedisTimeoutError("Timeout reading from socket"), True),
        (TimeoutError(), True),  # asyncio.timeout around the call
        (ConnectionRefusedError(), True),
        (RedisClusterUnreachableError("no node answers"), True),  # not a RedisError
        (ClusterDownError("CLUSTERDOWN"), True),
        (MaxConnectionsError("Too many connections"), False),  # this process's pool: load
        (ResponseError("OOM command not allowed"), False),  # an answer, not an outage
        (ReadOnlyError("READONLY"), False),
        (ValueError("a bug"), False),
    ],
)
def test_what_counts_as_an_outage_for_failing_open(error: BaseException, outage: bool) -> None:
    assert store_outage(error) is outage
