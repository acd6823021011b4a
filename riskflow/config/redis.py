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

import re
from urllib.parse import unquote

from riskflow.errors import ConfigError

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_SCHEME = re.compile(r"^(?P<scheme>[a-z+]+)://(?P<rest>.*)$")


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None, str | None, bool]:
    """([(host, port), ...], username, password, tls) of a `redis+cluster://` URL."""
    match = _SCHEME.match(url)
    if match is None or match["scheme"] not in CLUSTER_SCHEMES:
        raise ConfigError(f"redis_url {url!r}: not a redis+cluster:// or rediss+cluster:// URL")
    rest = match["rest"].split("?", 1)[0]
    netloc, _, path = rest.partition("/")
    if path not in ("", "0"):
        raise ConfigError(f"redis_url {url!r}: a Redis Cluster has only database 0")
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = [_host_port(url, item) for item in hosts.split(",") if item]
    if not nodes:
        raise ConfigError(f"redis_url {url!r}: name at least one node as host:port")
    return (
        nodes,
        unquote(username) or None,
        unquote(password) or None,
        match["scheme"] == "rediss+cluster",
    )


def _host_port(url: str, item: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep or host.endswith(":"):  # no port, or a bare IPv6 address
        host, port = item, "6379"
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"redis_url {url!r}: {item!r} is not host:port")
    return host, int(port)
