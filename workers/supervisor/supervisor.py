"""`riskflow up / down / status`: riskflow's services under supervisord (PyPI `supervisor`).

supervisord is a detached daemon with its own pid file: it outlives the terminal that ran
`riskflow up`, restarts a crashed service, gives up on one that keeps failing to start (state
FATAL) and rotates each service's log by size. This module starts it, asks it over its
XML-RPC control socket, and stops it. See docs/deploy.md for why supervisord.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from supervisor.xmlrpc import SupervisorTransport

from riskflow.errors import ServiceError
from riskflow.infra.pids import pid_alive
from workers.supervisor.config import SAFE_PATH, Layout
from workers.supervisor.events import LISTENER

# Log lines worth showing as "the last error" of a service.
_ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|FATAL|Traceback|error:|\w+Error\b|\w+Exception\b)")
# An INFO or DEBUG record whose logger's name looks like an error (uvicorn logs its startup
# as `INFO uvicorn.error: Uvicorn running on ...`).
_QUIET_RECORD = re.compile(r"\b(INFO|DEBUG)\s+[\w.]+:")
_SPAWNED = re.compile(r"spawned: '([^']+)' with pid")
_DAEMON_START = "supervisord started with pid"


@dataclass(frozen=True)
class ProcessInfo:
    """One service as supervisord sees it. `state`: STARTING, RUNNING, BACKOFF, STOPPING,
    STOPPED, EXITED, FATAL or UNKNOWN; `uptime_seconds` only while it runs."""

    name: str
    state: str
    pid: int | None
    uptime_seconds: float | None
    restarts: int
    exit_status: int | None
    spawn_error: str
    last_error: str


def last_error_line(log: Path, tail_bytes: int = 65_536, since: float | None = None) -> str:
    """The last line of a log that reads like an error ("" when none), at most 300 chars;
    with `since` (epoch seconds: the service's last start), only of records logged since
    then (a line without a time of its own, a traceback's, belongs to the record above it;
    an error of an earlier run is history, not the service's state)."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, log.stat().st_size - tail_bytes))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    found, current = "", None
    for line in text.splitlines():
        current = _logged_at(line) or current
        if since is not None and (current is None or current < since - 1):
            continue
        if _ERROR_LINE.search(line) and not _QUIET_RECORD.search(line):
            found = line.strip()[:300]
    return found


def _logged_at(line: str) -> float | None:
    """The time a log line starts with (Python's `asctime`, local; or RFC 3339 UTC, as the
    Temporal core logs), else None."""
    for pattern, parse in _STAMPS:
        match = pattern.match(line)
        if match:
            try:
                return parse(match.group(1))
            except ValueError:
                return None
    return None


def _asctime(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


_STAMPS: tuple[tuple[re.Pattern[str], Callable[[str], float]], ...] = (
    (re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"), _asctime),
    (re.compile(r"(?:\x1b\[\d+m)?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)"), _rfc3339),
)


def spawn_counts(daemon_log: Path) -> dict[str, int]:
    """How many times supervisord has started each service since it last started itself
    (read from its log; a restart is every spawn after the first)."""
    try:
        text = daemon_log.read_text(errors="replace")
    except OSError:
        return {}
    counts: dict[str, int] = {}
    for line in text[text.rfind(_DAEMON_START) :].splitlines():
        match = _SPAWNED.search(line)
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


def scrape(
    host: str, port: int, timeout_seconds: float = 2.0, path: str = "/metrics"
) -> tuple[str, str]:
    """(the page, "") when http://host:port{path} (a service's /metrics, or the console's
    health) answers 200, else ("", what went wrong)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{host}:{port}{path}", timeout=timeout_seconds) as response:
            status = int(response.status)
            body = response.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        return "", f"{path} on {port}: {type(exc).__name__}: {exc}"[:200]
    return (body, "") if status == 200 else ("", f"{path} on {port}: HTTP {status}")


def probe_metrics(
    host: str, port: int, timeout_seconds: float = 2.0, path: str = "/metrics"
) -> str:
    """ "" when http://host:port{path} answers 200, else what went wrong."""
    return scrape(host, port, timeout_seconds, path)[1]


class Supervisor:
    """The supervisord of one state directory."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def pid(self) -> int | None:
        """supervisord's pid, if it runs."""
        try:
            pid = int(self.layout.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def _rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.layout.socket.absolute()}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def start(self, conf_text: str, timeout: float = 30.0) -> int:
        """Write the configuration and start supervisord (it detaches); returns its pid once
        its control socket answers. Raises ServiceError when it does not start."""
        for path in (self.layout.conf, self.layout.pid_file, self.layout.daemon_log):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.layout.conf.write_text(conf_text)
        argv = [
            sys.executable,
            *SAFE_PATH,
            "-m",
            "supervisor.supervisord",
            "-c",
            str(self.layout.conf),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            msg = f"supervisord did not start: {(done.stderr or done.stdout).strip()[-500:]}"
            raise ServiceError(msg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None and self._answers():
                return pid
            time.sleep(0.1)
        raise ServiceError(f"supervisord did not answer (log: {self.layout.daemon_log})")

    def _answers(self) -> bool:
        try:
            state = self._rpc().getState()
        except (OSError, xmlrpc.client.Error):
            return False
        return cast(dict[str, Any], state).get("statename") == "RUNNING"

    def processes(self) -> list[ProcessInfo]:
        """Every configured service, in configuration order ([] when supervisord is down)."""
        if self.pid() is None:
            return []
        infos = cast(list[dict[str, Any]], self._rpc().getAllProcessInfo())
        spawns = spawn_counts(self.layout.daemon_log)
        services = [raw for raw in infos if raw["name"] != LISTENER]
        return [self._info(raw, spawns.get(raw["name"], 0)) for raw in services]

    def _info(self, raw: dict[str, Any], spawns: int) -> ProcessInfo:
        running = raw["statename"] in ("RUNNING", "STOPPING")
        exited = raw["statename"] in ("EXITED", "FATAL", "BACKOFF")
        return ProcessInfo(
            name=raw["name"],
            state=raw["statename"],
            pid=raw["pid"] or None,
            uptime_seconds=float(raw["now"] - raw["start"]) if running else None,
            restarts=max(0, spawns - 1),
            exit_status=raw["exitstatus"] if exited else None,
            spawn_error=raw.get("spawnerr") or "",
            # Running: only this run's errors (an earlier one is history). Given up or exited:
            # the last error whatever its time (a failed start may print before logging is
            # set up, without a time).
            last_error=last_error_line(
                self.layout.log(raw["name"]), since=(raw["start"] or None) if running else None
            ),
        )

    def start_stopped(self) -> list[str]:
        """Start again the services that are not running (given up, exited); their names."""
        started = []
        for info in self.processes():
            if info.state in ("FATAL", "EXITED", "STOPPED"):
                self._rpc().startProcess(info.name, False)
                started.append(info.name)
        return started

    def shutdown(self, timeout: float) -> bool:
        """Stop every service (SIGTERM, SIGKILL after its stop timeout), then supervisord.
        Anything still alive after `timeout` seconds is killed. True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        infos: list[dict[str, Any]] = []
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            infos = cast(list[dict[str, Any]], self._rpc().getAllProcessInfo())
        children = [int(raw["pid"]) for raw in infos if raw["pid"]]
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            self._rpc().shutdown()
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        for leftover in [pid, *children]:
            if pid_alive(leftover):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(leftover, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(leftover, signal.SIGKILL)
        self.layout.pid_file.unlink(missing_ok=True)
        for info in infos:  # the listener removes them as services stop; this is a backstop
            (self.layout.pid_file.parent / f"{info['name']}.pid").unlink(missing_ok=True)
        return True
