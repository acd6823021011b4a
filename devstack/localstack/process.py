"""Start, find and stop one background server process, with a pid file and a log file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from riskflow.config.services import LocalStackSettings
from riskflow.errors import PortInUseError, ServiceError
from riskflow.infra.pids import pid_alive


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    host: str
    ports: tuple[int, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and ad-hoc stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def on_free_ports(state_dir: Path, host: str = "127.0.0.1") -> LocalStackSettings:
    """Local stack settings on ports nobody listens on now (tests, benchmarks, side stacks)."""
    return LocalStackSettings(
        state_dir=state_dir,
        host=host,
        temporal_port=free_port(host),
        temporal_ui_port=free_port(host),
        kafka_port=free_port(host),
        redis_port=free_port(host),
        dashscope_port=free_port(host),
        receiver_port=free_port(host),
        smtp_port=free_port(host),
    )


class ManagedProcess:
    """One server under `state_dir`: `pids/<name>.pid` and `logs/<name>.log`. Its command is
    built (binaries located, installed if need be) only when it is started."""

    def __init__(self, name: str, state_dir: Path, spec: Callable[[], ProcessSpec]) -> None:
        self.name = name
        self._spec = spec
        self.pid_file = state_dir / "pids" / f"{name}.pid"
        self.log_file = state_dir / "logs" / f"{name}.log"

    def pid(self) -> int | None:
        """The pid we started, if that process still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self) -> int:
        """Start the process unless ours already runs; refuse a port held by someone else."""
        running = self.pid()
        if running is not None:
            return running
        spec = self._spec()
        for port in spec.ports:
            if not port_is_free(spec.host, port):
                raise PortInUseError(self.name, spec.host, port)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **spec.env}
        with open(self.log_file, "ab") as log:
            try:
                proc = subprocess.Popen(
                    spec.argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=spec.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                msg = f"{self.name}: cannot run {spec.argv[0]}: {exc}"
                raise ServiceError(msg) from exc
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def exited_early(self) -> str | None:
        """If the process died, the tail of its log, to explain why."""
        if self.pid() is not None:
            return None
        try:
            tail = self.log_file.read_text(errors="replace")[-2000:]
        except OSError:
            tail = ""
        return tail or "(no output)"

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the process we started (its whole process group). True if one was running."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
        self._signal(pid, signal.SIGKILL)
        return True

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
