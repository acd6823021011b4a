"""What `riskflow up` runs, as a supervisord configuration (pure: no I/O).

Each service is one `riskflow ... run` process (`worker-1` .. `worker-N`, `bridge`, `edge`)
with its log at `<state_dir>/logs/<service>.log`, rotated by size. supervisord itself keeps
its pid in `<state_dir>/pids/supervisord.pid`, its own log (spawns, exits, restarts) in
`<state_dir>/logs/supervisord.log` and its control socket in `<state_dir>/supervisor/`; an
event listener of its own (`workers.supervisor.events`) keeps `<state_dir>/pids/<service>.pid`.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from riskflow.config.settings import Settings
from workers.supervisor.events import LISTENER

# supervisord's control socket is an AF_UNIX path: Linux allows 107 bytes.
MAX_SOCKET_PATH = 107
# `python -P` (3.11+): the folder `up` was typed in is not put first on the services' import
# path, so a `console.py` or `workflows.py` there never stands in for riskflow's own.
SAFE_PATH = ("-P",)


@dataclass(frozen=True)
class Program:
    """One supervised service: its argv (after `python -m cli`), environment
    overrides, /metrics port (None: metrics off) and stop timeout in seconds."""

    name: str
    argv: list[str]
    stop_seconds: float
    metrics_port: int | None
    env: dict[str, str] = field(default_factory=dict)
    restart_always: bool = True  # False: only an unexpected exit status restarts it


@dataclass(frozen=True)
class Layout:
    """Where supervisord's files are under the state directory."""

    state_dir: Path

    @property
    def conf(self) -> Path:
        return self.state_dir / "supervisor" / "supervisord.conf"

    @property
    def socket(self) -> Path:
        """In the state directory; in the temp directory (named by a hash of the state
        directory) when that path is longer than a unix socket's may be."""
        path = (self.state_dir / "supervisor" / "supervisord.sock").absolute()
        if len(str(path)) <= MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(str(self.state_dir.absolute()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"riskflow-supervisord-{digest}.sock"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "pids" / "supervisord.pid"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.log_dir / "supervisord.log"

    @property
    def started_stack(self) -> Path:
        """The local stack services `up` started (JSON list), for `down` to stop."""
        return self.state_dir / "supervisor" / "started-stack.json"

    @property
    def ports(self) -> Path:
        """Each service's /metrics port as `up` configured it (JSON object), for `status`."""
        return self.state_dir / "supervisor" / "metrics-ports.json"

    def log(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"


CONSOLE_HEALTH_PATH = "/api/health"  # the console has no /metrics; its health endpoint
CALLBACKS_HEALTH_PATH = "/health"  # the callback listener's, on its own port


def programs(settings: Settings, workers: int, edge: bool, console: bool = False) -> list[Program]:
    """worker-1..worker-N, the bridge, (when `edge`) the edge, (when `console`) the
    operator console and (when an app channel is configured) the callback listener, each on
    its own ports."""
    up, metrics = settings.supervisor, settings.metrics

    def port(value: int) -> int | None:
        return value if metrics.enabled else None

    result = []
    for n in range(1, workers + 1):
        shift = (n - 1) * up.worker_port_step
        env = {
            "RISKFLOW_METRICS__WORKER_PORT": str(metrics.worker_port + shift),
            "RISKFLOW_METRICS__WORKER_SDK_PORT": str(metrics.worker_sdk_port + shift),
        }
        result.append(
            Program(
                f"worker-{n}",
                ["worker", "run"],
                settings.worker_shutdown_seconds() + up.stop_margin_seconds,
                port(metrics.worker_port + shift),
                env,
            )
        )
    result.append(
        Program("bridge", ["bridge", "run"], up.bridge_stop_seconds, port(metrics.bridge_port))
    )
    if edge:
        result.append(
            Program(
                "edge",
                ["edge", "run"],
                up.edge_stop_seconds,
                port(metrics.edge_port),
                restart_always=False,
            )
        )
    if console:
        # Its health is probed on its own port (CONSOLE_HEALTH_PATH), metrics on or off.
        result.append(
            Program("console", ["console", "run"], up.bridge_stop_seconds, settings.console.port)
        )
    if settings.notifications.app_channels():
        # The receive URLs of the app channels' cards; health probed like the console's.
        listen = settings.callbacks.port
        result.append(Program("callbacks", ["callbacks", "run"], up.bridge_stop_seconds, listen))
    return result


def _path(path: Path, expansions: int = 1) -> str:
    """An absolute path for a supervisord value: it expands `%(name)s` in every value, and
    twice in a program's log file names."""
    return str(path.absolute()).replace("%", "%" * 2**expansions)


def _quote(value: str) -> str:
    """A value for supervisord's `command=` (shlex-split) or `environment=` (quoted)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def render(
    layout: Layout, settings: Settings, python: str, config_dir: Path, items: list[Program]
) -> str:
    """The supervisord.conf text, running `python -P -m cli --config-dir ...`."""
    up = settings.supervisor
    lines = [
        "[unix_http_server]",
        f"file={_path(layout.socket)}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"pidfile={_path(layout.pid_file)}",
        f"logfile={_path(layout.daemon_log)}",
        f"logfile_maxbytes={up.log_max_bytes}",
        f"logfile_backups={up.log_backups}",
        "loglevel=info",
        f"directory={_path(Path.cwd())}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
    ]
    pids = str(layout.pid_file.parent.absolute())
    listener = [python, *SAFE_PATH, "-m", "workers.supervisor.events", pids]
    lines += [
        f"[eventlistener:{LISTENER}]",
        f"command={' '.join(_quote(part) for part in listener)}",
        "events=PROCESS_STATE",
        "autorestart=true",
        f"stderr_logfile={_path(layout.log(LISTENER), expansions=2)}",
        f"stderr_logfile_maxbytes={up.log_max_bytes}",
        "",
    ]
    base = [python, *SAFE_PATH, "-m", "cli", "--config-dir", str(config_dir.absolute())]
    for program in items:
        command = " ".join(_quote(part) for part in [*base, *program.argv])
        env = ",".join(f"{k}={_quote(v)}" for k, v in program.env.items())
        lines += [
            f"[program:{program.name}]",
            f"command={command}",
            *([f"environment={env}"] if env else []),
            "autostart=true",
            # A service that stops by itself is started again, even with exit status 0 (a
            # plain `kill` of a worker); only `down` (supervisorctl stop) keeps it stopped. The
            # edge ends with 0 at the end of a video file, which is not restarted.
            f"autorestart={'true' if program.restart_always else 'unexpected'}",
            "exitcodes=0",
            f"startsecs={max(1, round(up.start_seconds))}",
            f"startretries={up.start_retries}",
            "stopsignal=TERM",
            f"stopwaitsecs={max(1, round(program.stop_seconds))}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_path(layout.log(program.name), expansions=2)}",
            f"stdout_logfile_maxbytes={up.log_max_bytes}",
            f"stdout_logfile_backups={up.log_backups}",
            "",
        ]
    return "\n".join(lines)
