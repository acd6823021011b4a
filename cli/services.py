"""`riskflow up / down / status / logs`: every riskflow service in the background, supervised
(`workers.supervisor.supervisor`), after the local stack (`riskflow dev up`) where it is used."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import sys
import time
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, settings_of
from cli.dev import print_status
from devstack.localstack.stack import LocalStack
from riskflow.config.settings import Settings
from riskflow.errors import ConfigError
from riskflow.infra.kafka import ensure_topics
from workers.supervisor.config import (
    CALLBACKS_HEALTH_PATH,
    CONSOLE_HEALTH_PATH,
    Layout,
    programs,
    render,
)
from workers.supervisor.health import BridgeReading
from workers.supervisor.supervisor import ProcessInfo, Supervisor, probe_metrics, scrape

_SETTLING = ("STARTING", "BACKOFF")


def _start_stack(settings: Settings, layout: Layout) -> None:
    """`dev up` for the services without a configured address; remember what it started."""
    stack = LocalStack(settings)
    if not stack.services:
        return
    before = stack.running()
    try:
        with console.status("starting the local stack..."):
            asyncio.run(stack.up())
    finally:  # what did start is `down`'s to stop, even when another service did not
        started = stack.running() - before
        if layout.started_stack.exists():
            started |= set(json.loads(layout.started_stack.read_text()))
        layout.started_stack.parent.mkdir(parents=True, exist_ok=True)
        layout.started_stack.write_text(json.dumps(sorted(started)))
    if "kafka" in {s.name for s in stack.services}:
        asyncio.run(ensure_topics(stack.endpoints.kafka, settings.kafka))


def _edge_wanted(settings: Settings, no_edge: bool) -> bool:
    if no_edge or not settings.cameras:
        return False
    if importlib.util.find_spec("ultralytics") is None:
        console.print("[yellow]edge: the detect extra is not installed; not started[/yellow]")
        return False
    return True


def _settle(
    supervisor: Supervisor, timeout_seconds: float, settings: Settings
) -> list[ProcessInfo]:
    """Wait until no service is still starting (or backing off) and every running one is
    healthy (its /metrics answers; the bridge reads a partition, which its group may take a
    while to assign), at most the timeout."""
    deadline = time.monotonic() + timeout_seconds
    ports = _ports(supervisor.layout)
    infos = supervisor.processes()
    while not _settled(infos, settings, ports) and time.monotonic() < deadline:
        time.sleep(0.5)
        infos = supervisor.processes()
    return infos


def _settled(infos: list[ProcessInfo], settings: Settings, ports: dict[str, int | None]) -> bool:
    if any(p.state in _SETTLING for p in infos):
        return False
    running = [p for p in infos if p.state == "RUNNING"]
    return not any(_health(p, settings, ports)[0] for p in running)


def _ports(layout: Layout) -> dict[str, int | None]:
    """Each service's /metrics port as `up` configured it."""
    if not layout.ports.exists():
        return {}
    ports: dict[str, int | None] = json.loads(layout.ports.read_text())
    return ports


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _health(info: ProcessInfo, settings: Settings, ports: dict[str, int | None]) -> tuple[str, str]:
    """("", note) when healthy; else (why not, note): gave up, not running, /metrics not
    answering, a bridge reading no partition. The note: the bridge's periods without any."""
    if info.state == "FATAL":
        tries = settings.supervisor.start_retries + 1
        why = info.last_error or info.spawn_error or f"exit status {info.exit_status}"
        return f"gave up after {tries} failed starts in a row: {why}", ""
    if info.state != "RUNNING":
        return info.state.lower(), ""
    port = ports.get(info.name)
    if port is None:
        return "", ""
    if info.name == "console":
        return probe_metrics(settings.console.host, port, path=CONSOLE_HEALTH_PATH), ""
    if info.name == "callbacks":
        page, problem = scrape(settings.callbacks.host, port, path=CALLBACKS_HEALTH_PATH)
        return problem, callbacks_note(page)
    page, problem = scrape(settings.metrics.host, port)
    reading = BridgeReading.parse(page) if info.name == "bridge" and page else None
    if reading is None:
        return problem, ""
    return reading.problem(), reading.note()


# Refusals that say the callback secrets do not match the app's (not an attacker's junk,
# which fails the same checks: the note says "probably").
_KEY_REASONS = ("bad_signature", "bad_padding", "bad_ciphertext", "bad_length", "bad_token")


def callbacks_note(page: str) -> str:
    """What `riskflow status` says of the callback listener's /health: Stream connections
    not open, and channels whose callbacks were refused by their secrets since it started."""
    try:
        health = json.loads(page) if page else {}
    except json.JSONDecodeError:
        return ""
    notes = [
        f"{name}: DingTalk Stream not connected (reconnecting)"
        for name, connected in (health.get("streams") or {}).items()
        if not connected
    ]
    for name, reasons in (health.get("refused") or {}).items():
        keyed = {r: n for r, n in reasons.items() if r in _KEY_REASONS}
        if keyed:
            counts = ", ".join(f"{n} {r}" for r, n in sorted(keyed.items()))
            notes.append(
                f"{name}: callbacks refused since start ({counts}): if real clicks, the "
                "channel's callback secrets (token, AES/encrypt key, api secret) are not the app's"
            )
    return "; ".join(notes)


def _print_services(infos: list[ProcessInfo], settings: Settings, layout: Layout) -> bool:
    """The services table; True when every service runs and answers."""
    ports = _ports(layout)
    table = Table(title="riskflow services (riskflow up)")
    for column in ("service", "state", "pid", "uptime", "restarts", "health", "last error"):
        table.add_column(column, overflow="fold")
    healths = {info.name: _health(info, settings, ports) for info in infos}
    problems = {name: problem for name, (problem, _) in healths.items()}
    for info in infos:
        problem = problems[info.name]
        shown = "[green]healthy[/green]" if not problem else "[red]not healthy[/red]"
        table.add_row(
            info.name,
            info.state,
            str(info.pid or "-"),
            _uptime(info.uptime_seconds),
            str(info.restarts),
            shown,
            info.last_error or "-",
        )
    console.print(table)
    for name, (problem, note) in healths.items():  # whole, unwrapped: to read and to grep
        for line in (problem, note):
            if line:
                console.print(f"{name}: {line}", markup=False, soft_wrap=True, highlight=False)
    console.print(f"logs: {layout.log_dir}/<service>.log  (riskflow logs [SERVICE] -f)")
    return not any(problems.values())


def up(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
    no_edge: Annotated[bool, typer.Option("--no-edge", help="do not run the edge")] = False,
    with_console: Annotated[
        bool, typer.Option("--with-console", help="the operator console (riskflow console run)")
    ] = False,
    wait: Annotated[
        float, typer.Option(help="seconds to wait for services to start (the bridge: to read)")
    ] = 120.0,
) -> None:
    """Start the local stack (where used) and every service in the background, supervised:
    restarted when they crash, logs in <state_dir>/logs. Running it twice starts nothing new."""
    settings = settings_of(ctx)
    layout = Layout(settings.local.state_dir)
    supervisor = Supervisor(layout)
    _start_stack(settings, layout)
    items = programs(settings, workers, _edge_wanted(settings, no_edge), with_console)
    if supervisor.pid() is not None:
        again = supervisor.start_stopped()
        console.print(f"already up; started again: {', '.join(again) or 'nothing'}")
        running = sorted(p.name for p in supervisor.processes())
        if running != sorted(p.name for p in items):
            console.print(
                f"[yellow]running {', '.join(running)}; to change them, "
                "`riskflow down` first[/yellow]"
            )
    else:
        text = render(layout, settings, sys.executable, settings.config_dir, items)
        layout.ports.parent.mkdir(parents=True, exist_ok=True)
        layout.ports.write_text(json.dumps({p.name: p.metrics_port for p in items}))
        pid = supervisor.start(text)
        console.print(f"supervisord: pid {pid} ({layout.pid_file})")
    with console.status("starting services..."):
        infos = _settle(supervisor, wait, settings)
    if not _print_services(infos, settings, layout):
        raise typer.Exit(1)


def down(ctx: typer.Context) -> None:
    """Stop exactly what `up` started: its services (SIGTERM, then SIGKILL after each one's stop
    timeout), then the local stack services `up` started."""
    settings = settings_of(ctx)
    layout = Layout(settings.local.state_dir)
    up_settings = settings.supervisor
    worker_stop = settings.temporal.graceful_shutdown_seconds + up_settings.stop_margin_seconds
    longest = max(worker_stop, up_settings.bridge_stop_seconds, up_settings.edge_stop_seconds)
    was_up = Supervisor(layout).shutdown(timeout=longest + 15)
    console.print("services stopped" if was_up else "services: nothing was running")
    if layout.started_stack.exists():
        names = set(json.loads(layout.started_stack.read_text()))
        stopped = LocalStack(settings).stop_only(names)
        layout.started_stack.unlink()
        console.print(f"local stack stopped: {', '.join(stopped) or 'nothing was running'}")


def status(ctx: typer.Context) -> None:
    """Every service: state, pid, uptime, restarts, health (/metrics; the bridge: whether it
    reads any partition, and the periods it read none), the last error line of its log; then
    the local stack. Exit 1 if anything is not running or not healthy."""
    settings = settings_of(ctx)
    layout = Layout(settings.local.state_dir)
    supervisor = Supervisor(layout)
    healthy = True
    if supervisor.pid() is None:
        console.print("riskflow services: not running (`riskflow up` starts them)")
        healthy = False
    else:
        healthy = _print_services(supervisor.processes(), settings, layout)
    stack = LocalStack(settings)
    if stack.services:
        statuses = asyncio.run(stack.status())
        print_status(statuses, stack.endpoints)
        healthy = healthy and all(s.healthy for s in statuses)
    if not healthy:
        raise typer.Exit(1)


def logs(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Argument(help="worker-1, bridge, edge, kafka, ...")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep following")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="lines to show")] = 50,
) -> None:
    """Show (or follow, like the guide's `tail -f logs/*.log`) one service's log or all."""
    log_dir = Layout(settings_of(ctx).local.state_dir).log_dir
    files = sorted(log_dir.glob("*.log"))
    if service is not None:
        files = [f for f in files if f.stem == service]
    if not files:
        known = ", ".join(f.stem for f in sorted(log_dir.glob("*.log"))) or "none yet"
        raise ConfigError(f"no log for {service or 'any service'} in {log_dir} (logs: {known})")
    tail = shutil.which("tail")
    if tail is None:
        raise ConfigError("`tail` is not on PATH")
    argv = [tail, "-n", str(lines), *(["-F"] if follow else []), *map(str, files)]
    sys.stdout.flush()
    os.execv(tail, argv)
