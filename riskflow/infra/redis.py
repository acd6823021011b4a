"""The one place that makes Redis clients: a single server or a Redis Cluster, by URL scheme.

URLs:
- `redis://host:port/0`, `rediss://...`, `unix://...`: one server (redis-py's own URL format).
- `redis+cluster://[user[:password]@]host:port[,host:port...]`, or `rediss+cluster://` for TLS:
  a Redis (or Valkey) Cluster; the listed nodes are only the first contacts, the client finds
  every node and slot itself. Only database 0 exists on a Cluster, so a path other than empty
  or `/0` is an error.

Minimum server: Redis 5.0 or any Valkey. The key pool's Lua reads `TIME` before it writes,
which a script may do only when scripts replicate their effects rather than their source:
the default from Redis 5.0 (3.2-4.x needed `redis.replicate_commands()`; Redis 7.0 and every
Valkey replicate effects only). `check_server_version` checks it at start.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    MaxConnectionsError,
    RedisClusterUnreachableError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from riskflow.config.redis import is_cluster_url, parse_cluster_url
from riskflow.errors import KeyPoolUnavailable, StoreVersionError

logger = logging.getLogger(__name__)
T = TypeVar("T")
# What a store that is restarting, stalled or failing over answers: worth waiting out.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, KeyPoolUnavailable)
# How long an alarm's Redis call (the incident gate, a message's idempotency claim) may take
# before the alarm goes on without it (`store_outage`).
FAIL_OPEN_SECONDS = 3.0
_OUTAGE = (
    RedisConnectionError,
    RedisTimeoutError,
    RedisClusterUnreachableError,  # not a RedisError: a cluster none of whose nodes answers
    ClusterDownError,
    OSError,  # builtins TimeoutError too (asyncio.timeout)
)


def store_outage(exc: BaseException) -> bool:
    """Whether `exc` says Redis cannot be reached (refused, stalled, a cluster down), as
    opposed to its answers (out of memory, read-only, no permission: not an outage) or this
    process's own full connection pool (`MaxConnectionsError`: load, not an outage)."""
    return isinstance(exc, _OUTAGE) and not isinstance(exc, MaxConnectionsError)


RedisClient = Redis | RedisCluster
"""What every activity and tool gets: either client has the commands riskflow uses."""
MIN_REDIS_VERSION = (5, 0)


def redis_client(url: str, *, timeout_seconds: float | None = None) -> RedisClient:
    """A client for `url` (see the module docstring for the formats); `timeout_seconds`
    bounds connecting and each reply (None: redis-py's defaults). Raises ConfigError for a
    cluster URL it cannot read."""
    if not is_cluster_url(url):
        return Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
    nodes, username, password, tls = parse_cluster_url(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        username=username,
        password=password,
        ssl=tls,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
    )


def parse_version(info: dict[str, object]) -> tuple[str, tuple[int, ...]]:
    """("Valkey 8.1.1" or "Redis 7.2.4", (major, minor, ...)) from an `INFO server` reply.
    Valkey reports `valkey_version` (and a `redis_version` of 7.2.4 for compatibility)."""
    for field, name in (("valkey_version", "Valkey"), ("redis_version", "Redis")):
        raw = info.get(field)
        if raw is not None:
            numbers = tuple(int(p) for p in re.findall(r"\d+", str(raw))[:3])
            if name == "Valkey":
                return f"Valkey {raw}", (99, *numbers)  # every Valkey is newer than the minimum
            return f"Redis {raw}", numbers
    return "an unknown server", ()


def require_supported(info: dict[str, object]) -> str:
    """The server's name and version from its `INFO server` reply ("Valkey 9.0.1").
    Raises StoreVersionError when it is older than Redis 5.0."""
    name, version = parse_version(info)
    if version < MIN_REDIS_VERSION:
        raise StoreVersionError(
            f"the Redis server is {name}; riskflow needs Redis >= 5.0 or Valkey: the key "
            "pool's scripts read TIME before writing, which needs script effects "
            "replication (the default from Redis 5.0)"
        )
    return name


async def check_server_version(client: RedisClient) -> str:
    """The server's name and version ("Valkey 9.0.1"); on a Cluster every node is checked.
    Raises StoreVersionError when a node is older than Redis 5.0."""
    if isinstance(client, RedisCluster):
        # {node name: INFO of that node}
        replies = await client.info("server", target_nodes=RedisCluster.ALL_NODES)
        infos = list(replies.values())
    else:
        infos = [await client.info("server")]
    names = [require_supported(info) for info in infos]
    return names[0] if names else "an unknown server"


async def when_reachable(step: Callable[[], Awaitable[T]], within: float = 60.0) -> T:
    """`step()`, retried while the store cannot be reached (a restart, a stalled server, a
    failover) for up to `within` seconds; then the last error propagates. A program that
    starts during a short outage waits it out instead of exiting (as `start_client` does
    for Kafka); any other error (a server too old, a refused password) propagates at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.5
    while True:
        try:
            return await step()
        except UNREACHABLE as exc:
            refused = any(isinstance(e, AuthenticationError) for e in (exc, exc.__cause__))
            if refused or loop.time() + delay > deadline:
                raise
            logger.warning("Redis unreachable (%s); retrying in %.1fs", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def as_text(value: bytes | str) -> str:
    """A value read from Redis as text (clients built without `decode_responses` answer
    bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)
