"""`riskflow up / status / logs / down` on a local stack of its own: every service supervised
in the background, an e2e event assessed, workers killed with -9 restarted, nothing left
behind by `down`, services that cannot start reported with their error."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.localstack.process import free_port, port_is_free
from devstack.localstack.stack import LocalStack
from riskflow.config.settings import Settings
from riskflow.infra.pids import pid_alive
from tests.conftest import CONFIG, cli_env, eventually, local_settings
from workers.supervisor.config import Layout
from workers.supervisor.supervisor import ProcessInfo, Supervisor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]


def consecutive_free_ports(count: int = 2) -> int:
    """A free port whose next `count - 1` are free too (a worker's and the next workers')."""
    for _ in range(100):
        port = free_port()
        if port + count <= 65536 and all(
            port_is_free("127.0.0.1", port + n) for n in range(1, count)
        ):
            return port
    raise RuntimeError(f"no {count} consecutive free ports")


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    """The CLI's environment: this test's stack ports, metrics on free ports."""
    env = cli_env(settings)
    env.update(
        {
            "RISKFLOW_METRICS__ENABLED": "true",
            "RISKFLOW_METRICS__WORKER_PORT": str(free_port()),
            "RISKFLOW_METRICS__WORKER_SDK_PORT": str(free_port()),
            "RISKFLOW_METRICS__BRIDGE_PORT": str(free_port()),
            "RISKFLOW_METRICS__BRIDGE_SDK_PORT": str(free_port()),
            "RISKFLOW_METRICS__EDGE_PORT": str(free_port()),
            # worker-2 far from worker-1, on a port free now
            "RISKFLOW_SUPERVISOR__WORKER_PORT_STEP": "1",
            "COLUMNS": "200",
        }
    )
    env.update(extra)
    return env


async def _cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def _by_name(layout: Layout) -> dict[str, ProcessInfo]:
    return {p.name: p for p in Supervisor(layout).processes()}


def _pid_file(layout: Layout, name: str) -> int | None:
    try:
        return int((layout.state_dir / "pids" / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None


def _stack_pids(settings: Settings) -> list[int]:
    stack = LocalStack(settings)
    return [pid for s in stack.services if (pid := s.process(stack.state_dir).pid())]


def _ports(settings: Settings, env: dict[str, str]) -> list[int]:
    """The ports this test's stack and services listened on (worker-2's: worker-1's + 1)."""
    local = settings.local
    stack = [local.temporal_port, local.kafka_port, local.redis_port, local.dashscope_port]
    worker = [int(env[f"RISKFLOW_METRICS__WORKER_{kind}PORT"]) for kind in ("", "SDK_")]
    bridge = [int(env[f"RISKFLOW_METRICS__BRIDGE_{kind}PORT"]) for kind in ("", "SDK_")]
    return stack + worker + [port + 1 for port in worker] + bridge


async def test_up_assesses_restarts_and_down_leaves_nothing(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "s")
    # worker-2's ports are worker-1's + 1 (the step): four ports in a row, each free now.
    env = _env(settings)
    first = consecutive_free_ports(4)
    env["RISKFLOW_METRICS__WORKER_PORT"] = str(first)
    env["RISKFLOW_METRICS__WORKER_SDK_PORT"] = str(first + 2)
    layout = Layout(settings.local.state_dir)
    try:
        code, out = await _cli(env, "up", "--workers", "2", "--no-edge")
        assert code == 0, out
        first = _by_name(layout)
        assert sorted(first) == ["bridge", "worker-1", "worker-2"]
        # supervisord detached into a session of its own: closing the terminal leaves it be.
        daemon = Supervisor(layout).pid()
        assert daemon is not None and os.getsid(daemon) == daemon != os.getsid(0)
        assert all(p.state == "RUNNING" and p.pid for p in first.values())
        for name, info in first.items():
            assert layout.log(name).exists()
            assert _pid_file(layout, name) == info.pid

        code, out = await _cli(env, "pipeline", "test", "--mode", "e2e", "--num-messages", "4")
        assert code == 0, out

        # Twice is harmless: the same processes stay, nothing new starts.
        code, out = await _cli(env, "up", "--workers", "2", "--no-edge")
        assert code == 0, out
        assert "started again: nothing" in out
        assert {n: p.pid for n, p in _by_name(layout).items()} == {
            n: p.pid for n, p in first.items()
        }

        # worker-1 killed with -9, worker-2 stopped with a plain `kill` (SIGTERM: it exits 0):
        # both restarted (counted), and the next event is assessed.
        os.kill(first["worker-1"].pid or 0, signal.SIGKILL)
        os.kill(first["worker-2"].pid or 0, signal.SIGTERM)

        async def restarted() -> bool:
            now = _by_name(layout)
            return all(
                # at least once: a start that fails under load is retried and counted too
                now[n].state == "RUNNING" and now[n].pid != first[n].pid and now[n].restarts >= 1
                for n in ("worker-1", "worker-2")
            )

        await eventually(restarted, within=120)
        now = _by_name(layout)

        async def pid_files_follow() -> bool:
            return all(_pid_file(layout, n) == now[n].pid for n in ("worker-1", "worker-2"))

        await eventually(pid_files_follow, within=30)
        assert "exited: worker-1 (terminated by SIGKILL; not expected)" in (
            layout.daemon_log.read_text()
        )
        code, out = await _cli(env, "pipeline", "test", "--mode", "e2e", "--num-messages", "4")
        assert code == 0, out

        code, out = await _cli(env, "status")
        assert code == 0, out
        assert "worker-2" in out and "healthy" in out
        code, out = await _cli(env, "logs", "bridge", "-n", "3")
        assert code == 0, out
    finally:
        children = [p.pid for p in _by_name(layout).values() if p.pid]
        daemon = Supervisor(layout).pid()
        stack_pids = _stack_pids(settings)
        code, out = await _cli(env, "down")
    assert code == 0, out
    assert daemon is not None and stack_pids and children
    assert not [pid for pid in [daemon, *children, *stack_pids] if pid_alive(pid)]

    async def ports_free() -> bool:  # a SIGKILLed process's sockets close as it is reaped
        return all(port_is_free("127.0.0.1", port) for port in _ports(settings, env))

    await eventually(ports_free, within=30)
    assert _by_name(layout) == {}
    assert sorted(p.name for p in (layout.state_dir / "pids").iterdir()) == []


async def test_services_that_cannot_start_are_reported(tmp_path: Path) -> None:
    """A taken /metrics port (the bridge), a taken SDK metrics port (worker-2) and a camera
    source that does not exist (the edge): each given up and shown with its error; the rest
    runs. `down` then stops the services but not the stack it did not start."""
    settings = local_settings(tmp_path / "s")
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    missing = tmp_path / "no-such-video.mp4"
    text = (config / "cameras.yaml").read_text().replace("cameras: []", "cameras:")
    (config / "cameras.yaml").write_text(f'{text}\n  - {{id: "1", source: "{missing}"}}\n')
    env = _env(
        settings,
        RISKFLOW_SUPERVISOR__START_RETRIES="0",
        RISKFLOW_SUPERVISOR__START_SECONDS="90",  # the edge's imports are slow on a busy box
    )
    # worker-2's SDK port is worker-1's + 1 (the step): both must be free, not just one
    # (a fresh clone's run found the second one taken by another process).
    first_sdk = consecutive_free_ports()
    env["RISKFLOW_METRICS__WORKER_SDK_PORT"] = str(first_sdk)
    worker2_sdk = first_sdk + 1
    bridge_port = int(env["RISKFLOW_METRICS__BRIDGE_PORT"])
    stack = LocalStack(settings)
    layout = Layout(settings.local.state_dir)
    with socket.socket() as squat_bridge, socket.socket() as squat_sdk:
        squat_bridge.bind(("127.0.0.1", bridge_port))
        squat_bridge.listen()
        squat_sdk.bind(("127.0.0.1", worker2_sdk))
        squat_sdk.listen()
        try:
            await stack.up()  # started before `up`: `down` must leave it running
            args = ("--config-dir", str(config))
            code, out = await _cli(env, *args, "up", "--workers", "2", "--wait", "0")
            assert code == 1, out  # not everything is running yet

            async def given_up() -> bool:
                now = _by_name(layout)
                return all(now[n].state == "FATAL" for n in ("bridge", "worker-2", "edge"))

            await eventually(given_up, within=180, interval=1)
            code, out = await _cli(env, *args, "status")
            assert code == 1, out
            lines = {
                line.split(":", 1)[0]: line for line in out.splitlines() if ": gave up" in line
            }
            assert set(lines) == {"bridge", "worker-2", "edge"}, out
            assert f"metrics: port 127.0.0.1:{bridge_port} is already in use" in lines["bridge"]
            assert (
                f"sdk metrics: port 127.0.0.1:{worker2_sdk} is already in use"
                in (lines["worker-2"])
            )
            assert f"video file {missing} does not exist" in lines["edge"]
            assert _by_name(layout)["worker-1"].state in ("STARTING", "RUNNING")
        finally:
            code, out = await _cli(env, "down")
            running = stack.running()
            stack.down()
    assert code == 0, out
    assert "nothing was running" not in out.splitlines()[0]
    assert running == {"temporal", "kafka", "redis", "dashscope", "receiver"}
    assert Supervisor(layout).pid() is None


async def test_a_taken_stack_port_stops_up_and_down_stops_what_it_started(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "s")
    env = _env(settings)
    stack = LocalStack(settings)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.local.temporal_port))
        squatter.listen()
        try:
            code, out = await _cli(env, "up", "--no-edge")
            assert code == 2, out
            port = settings.local.temporal_port
            assert f"temporal: port 127.0.0.1:{port} is already in use" in out
            assert stack.running() == {"redis", "kafka", "dashscope", "receiver"}  # before temporal
            assert Supervisor(Layout(settings.local.state_dir)).pid() is None
        finally:
            code, out = await _cli(env, "down")
            left = stack.running()
            stack.down()
    assert code == 0, out
    assert left == set()


def test_cli_help_lists_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for command in ("up", "down", "status", "logs"):
        assert f" {command} " in result.stdout
