"""Redis URLs, read without connecting (the settings validate them; `riskflow.infra.redis`
makes the clients): `redis://host:port/0`, `rediss://...`, `unix://...` for one server, and
`redis+cluster://[user[:password]@]host:port[,host:port...]` (or `rediss+cluster://`) for a
Redis or Valkey Cluster, whose listed nodes are only the first contacts; a Cluster has only
database 0.
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
