"""`riskflow demo` stopped by SIGTERM (`kill`, a supervisor) or SIGHUP (its terminal closed)
stops everything it started, as Ctrl-C does: the five local services (each in a session of
its own, so no signal to the demo's process group reaches them) and its own tasks. Run as a
user runs it, in a process of its own, on ports and a state directory of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

from devstack.localstack.process import free_port, port_is_free
from riskflow.config.services import LocalStackSettings
from tests.conftest import group_timeouts

SERVICES = {"temporal", "kafka", "redis", "dashscope", "receiver"}


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) from /proc, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (command) "
    return fields[0], int(fields[1])


def descendants(pid: int) -> set[int]:
    """Every process under `pid` now (children, their children, ...)."""
    parents = {
        int(d.name): stat[1]
        for d in Path("/proc").iterdir()
        if d.name.isdigit() and (stat := _stat(int(d.name))) is not None
    }
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def gone(pid: int) -> bool:
    """Not running (an orphan nobody reaped yet is a zombie: it runs nothing)."""
    stat = _stat(pid)
    return stat is None or stat[0] == "Z"


async def line_with(stream: asyncio.StreamReader, text: str, seen: list[str]) -> None:
    while True:
        line = (await stream.readline()).decode(errors="replace")
        if not line:
            raise AssertionError(f"the demo ended before {text!r}:\n{''.join(seen)}")
        seen.append(line)
        if text in line:
            return


@pytest.mark.timeout(400)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
async def test_a_terminated_demo_stops_every_service_it_started(
    sig: signal.Signals, tmp_path: Path
) -> None:
    ports = {
        name: free_port()
        for name in ("TEMPORAL", "TEMPORAL_UI", "KAFKA", "REDIS", "DASHSCOPE", "RECEIVER", "SMTP")
    }
    timeouts = group_timeouts(LocalStackSettings())
    console_port = free_port()
    state = tmp_path / "state"
    env = {
        **os.environ,
        "RISKFLOW_LOCAL__STATE_DIR": str(state),
        **{f"RISKFLOW_LOCAL__{name}_PORT": str(port) for name, port in ports.items()},
        "RISKFLOW_KAFKA__SESSION_TIMEOUT_MS": str(timeouts.session_timeout_ms),
        "RISKFLOW_KAFKA__HEARTBEAT_INTERVAL_MS": str(timeouts.heartbeat_interval_ms),
        "RISKFLOW_METRICS__ENABLED": "false",
        "RISKFLOW_CONSOLE__PORT": str(console_port),
    }
    env.pop("RISKFLOW_REDIS_URL", None)  # the demo starts all five
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "--log-level", "WARNING", "demo",
        "--cameras", "1", "--duration", "600",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    pids: dict[str, int] = {}
    try:
        # Printed once the stack is up and the worker, bridge and console run.
        await asyncio.wait_for(line_with(proc.stdout, "Console:", seen), 240)
        pids = {p.stem: int(p.read_text()) for p in (state / "pids").glob("*.pid")}
        assert set(pids) == SERVICES, pids
        children = descendants(proc.pid)
        assert set(pids.values()) <= children
        proc.send_signal(sig)
        rest, _ = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        leftovers = [pid for pid in pids.values() if not gone(pid)]
        for pid in leftovers:  # a failed run must not leave servers behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    out = "".join(seen) + rest.decode(errors="replace")
    assert proc.returncode == 0, out
    stopped = out[out.index("stopped: ") :].splitlines()[0]
    assert set(stopped.removeprefix("stopped: ").split(", ")) == SERVICES, out
    left = [pid for pid in children if not gone(pid)]
    assert not left, [command(pid) for pid in left]
    assert not list((state / "pids").glob("*.pid"))
    assert all(port_is_free("127.0.0.1", port) for port in [*ports.values(), console_port])
