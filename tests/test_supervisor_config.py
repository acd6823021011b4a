"""What `riskflow up` hands supervisord, and what `status` reads back from the logs (pure)."""

from __future__ import annotations

import configparser
import io
import json
import shlex
from datetime import datetime
from pathlib import Path

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from riskflow.config.services import MetricsSettings, SupervisorSettings, TemporalSettings
from tests.conftest import local_settings
from workers.supervisor.config import Layout, programs, render
from workers.supervisor.events import serve
from workers.supervisor.supervisor import last_error_line, spawn_counts


def _parsed(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return parser


def test_each_worker_has_its_own_ports_log_and_stop_timeout(tmp_path: Path) -> None:
    settings = local_settings(
        tmp_path / "state",
        metrics=MetricsSettings(worker_port=9000, worker_sdk_port=9010, bridge_port=9020),
        supervisor=SupervisorSettings(worker_port_step=100, stop_margin_seconds=3),
        temporal=TemporalSettings(graceful_shutdown_seconds=30),
    )
    items = programs(settings, workers=3, edge=True)
    assert [p.name for p in items] == ["worker-1", "worker-2", "worker-3", "bridge", "edge"]
    assert [p.metrics_port for p in items[:3]] == [9000, 9100, 9200]
    assert items[2].env == {
        "RISKFLOW_METRICS__WORKER_PORT": "9200",
        "RISKFLOW_METRICS__WORKER_SDK_PORT": "9210",
    }
    sdk = [int(p.env["RISKFLOW_METRICS__WORKER_SDK_PORT"]) for p in items[:3]]
    ports = [p.metrics_port for p in items] + sdk + [settings.metrics.bridge_sdk_port]
    assert len(ports) == len(set(ports))

    layout = Layout(tmp_path / "state")
    conf = _parsed(render(layout, settings, "/venv/bin/python", Path("config"), items))
    worker = conf["program:worker-3"]
    assert worker["stdout_logfile"] == str(tmp_path / "state" / "logs" / "worker-3.log")
    # The worker's grace is never less than one LLM call (30 s request + 5 s slot wait +
    # 15 s), so 50 s rather than the configured 30 s, plus the 3 s margin.
    assert settings.worker_shutdown_seconds() == 50
    assert worker["stopwaitsecs"] == "53"
    assert worker["stopasgroup"] == worker["killasgroup"] == "true"
    # Services come back after any exit of their own; the edge, whose video file may end, only
    # after an unexpected one.
    assert worker["autorestart"] == conf["program:bridge"]["autorestart"] == "true"
    assert conf["program:edge"]["autorestart"] == "unexpected"
    assert conf["supervisord"]["pidfile"] == str(tmp_path / "state" / "pids" / "supervisord.pid")


def test_metrics_off_means_no_health_port(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, metrics=MetricsSettings(enabled=False))
    assert {p.metrics_port for p in programs(settings, workers=2, edge=False)} == {None}


@pytest.mark.parametrize("awkward", ["50% off", 'a "quoted" dir', "back\\slash", "spa ce"])
def test_paths_survive_supervisords_parser(tmp_path: Path, awkward: str) -> None:
    """supervisord expands %(...)s in every value and shlex-splits `command=`: a state or
    config directory with a percent sign, quotes or spaces reaches it as it is."""
    base = tmp_path / awkward
    settings = local_settings(base / "state")
    items = programs(settings, workers=1, edge=False)
    layout = Layout(base / "state")
    for directory in (layout.log_dir, layout.pid_file.parent, layout.socket.parent):
        directory.mkdir(parents=True, exist_ok=True)
    (base / "c.conf").write_text(render(layout, settings, "/bin/py", base / "config", items))
    options = ServerOptions()
    options.configfile = str(base / "c.conf")
    options.process_config(do_usage=False)
    assert options.logfile == str(layout.daemon_log)
    configs = {g.name: g.process_configs[0] for g in options.process_group_configs}
    worker = configs["worker-1"]
    assert shlex.split(worker.command) == [
        "/bin/py",
        "-P",  # not the caller's folder first on the import path
        "-m",
        "cli",
        "--config-dir",
        str(base / "config"),
        "worker",
        "run",
    ]
    assert worker.stdout_logfile == str(layout.log("worker-1"))
    # Restarted whatever its exit status (a plain `kill` ends a worker with 0).
    assert worker.autorestart is RestartUnconditionally


def test_a_deep_state_directory_gets_its_socket_in_the_temp_directory(tmp_path: Path) -> None:
    deep, other = tmp_path / ("d" * 120), tmp_path / ("e" * 120)
    assert len(str(Layout(deep).socket)) <= 107
    assert Layout(deep).socket == Layout(deep).socket != Layout(other).socket
    assert Layout(tmp_path).socket == tmp_path / "supervisor" / "supervisord.sock"


def test_restarts_are_counted_since_the_daemon_last_started(tmp_path: Path) -> None:
    log = tmp_path / "supervisord.log"
    log.write_text(
        "2026-01-01 00:00:00,000 INFO supervisord started with pid 10\n"
        "2026-01-01 00:00:01,000 INFO spawned: 'worker-1' with pid 11\n"
        "2026-01-01 00:00:09,000 INFO spawned: 'worker-1' with pid 12\n"
        "2026-01-01 00:01:00,000 INFO supervisord started with pid 20\n"
        "2026-01-01 00:01:01,000 INFO spawned: 'worker-1' with pid 21\n"
        "2026-01-01 00:01:01,000 INFO spawned: 'bridge' with pid 22\n"
        "2026-01-01 00:02:00,000 WARN exited: bridge (terminated by SIGKILL; not expected)\n"
        "2026-01-01 00:02:01,000 INFO spawned: 'bridge' with pid 23\n"
    )
    assert spawn_counts(log) == {"worker-1": 1, "bridge": 2}
    assert spawn_counts(tmp_path / "missing.log") == {}


def test_the_last_error_line_of_a_log(tmp_path: Path) -> None:
    log = tmp_path / "bridge.log"
    log.write_text(
        "INFO workers.bridge.bridge: bridge on 127.0.0.1:9092\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1\n'
        "ConnectionRefusedError: [Errno 111] Connection refused\n"
        "INFO workers.bridge.bridge: retrying\n"
    )
    assert last_error_line(log) == "ConnectionRefusedError: [Errno 111] Connection refused"
    log.write_text("INFO all well\n")
    assert last_error_line(log) == ""
    log.write_text("2026-12-07 17:52:31 INFO uvicorn.error: Uvicorn running on http://x\n")
    assert last_error_line(log) == ""  # the logger's name is not an error
    assert last_error_line(tmp_path / "missing.log") == ""


def test_the_event_listener_keeps_a_pid_file_per_running_service(tmp_path: Path) -> None:
    """supervisord's listener protocol, as its docs give it: READY, header, payload, RESULT."""

    def event(name: str, payload: str) -> bytes:
        body = payload.encode()
        header = f"ver:3.0 server:supervisor serial:1 pool:p poolserial:1 eventname:{name} "
        return f"{header}len:{len(body)}\n".encode() + body

    stream = b"".join(
        [
            event("PROCESS_STATE_RUNNING", "processname:worker-1 groupname:worker-1 pid:41"),
            event("PROCESS_STATE_RUNNING", "processname:bridge groupname:bridge pid:42"),
            event("PROCESS_STATE_EXITED", "processname:bridge groupname:bridge expected:0 pid:42"),
            event("PROCESS_STATE_RUNNING", "processname:../evil groupname:x pid:43"),
            event("PROCESS_STATE_STARTING", "processname:bridge groupname:bridge tries:0"),
        ]
    )
    out = io.BytesIO()
    serve(tmp_path / "pids", io.BytesIO(stream), out)
    assert {p.name: p.read_text() for p in (tmp_path / "pids").iterdir()} == {"worker-1.pid": "41"}
    assert out.getvalue() == b"READY\n" + b"RESULT 2\nOKREADY\n" * 5


def test_with_console_the_console_is_a_supervised_service(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "state")
    items = programs(settings, workers=1, edge=False, console=True)
    assert [p.name for p in items] == ["worker-1", "bridge", "console"]
    console = items[-1]
    assert console.argv == ["console", "run"] and console.metrics_port == settings.console.port
    conf = _parsed(render(Layout(tmp_path / "state"), settings, "/py", Path("config"), items))
    assert conf["program:console"]["command"].endswith('"console" "run"')


def test_an_app_channel_brings_the_callback_listener_as_a_supervised_service(
    tmp_path: Path,
) -> None:
    from riskflow.config.channels import NotificationSettings
    from tests.test_wecom_app_actions import CHANNELS

    settings = local_settings(tmp_path / "state")
    assert "callbacks" not in [p.name for p in programs(settings, workers=1, edge=False)]
    with_app = settings.model_copy(
        update={"notifications": NotificationSettings.model_validate(CHANNELS.model_dump())}
    )
    listener = programs(with_app, workers=1, edge=False)[-1]
    assert listener.name == "callbacks" and listener.argv == ["callbacks", "run"]
    assert listener.metrics_port == settings.callbacks.port  # health probed on its own port


def test_an_error_of_an_earlier_run_is_not_the_services_last_error(tmp_path: Path) -> None:
    """`riskflow status` shows the last error of the service's current run: an error logged
    before its last start (a bad key since fixed) is history."""
    log = tmp_path / "callbacks.log"
    log.write_text(
        "2026-12-07 09:00:00,001 ERROR workers.callbacks.listener: bad callback_aes_key\n"
        "Traceback (most recent call last):\n"
        "ValueError: not 43 characters\n"
        "2026-12-07 10:00:00,001 INFO workers.callbacks.listener: callbacks on 127.0.0.1:8310\n"
        "\x1b[2m2026-12-07T02:00:05.000000Z\x1b[0m WARN temporalio_sdk_core: Task not found\n"
    )
    started = datetime(2026, 12, 7, 10, 0, 0).timestamp()  # local time, as asctime logs it
    assert last_error_line(log) == "ValueError: not 43 characters"
    assert last_error_line(log, since=started) == ""
    before = datetime(2026, 12, 7, 8, 59, 0).timestamp()
    assert last_error_line(log, since=before) == "ValueError: not 43 characters"
    with log.open("a") as more:
        more.write("2026-12-07 10:00:09,000 ERROR workers.callbacks.app: Redis unreachable\n")
    assert last_error_line(log, since=started).endswith("Redis unreachable")


def test_status_says_which_callback_secrets_do_not_match_and_which_streams_are_down() -> None:
    from cli.services import callbacks_note

    health = {
        "ok": True,
        "streams": {"ops-ding": False, "night-ding": True},
        "refused": {"shift-app": {"bad_padding": 3, "stale": 9}, "ops-app": {"replayed": 2}},
    }
    note = callbacks_note(json.dumps(health))
    assert "ops-ding: DingTalk Stream not connected" in note and "night-ding" not in note
    assert "shift-app: callbacks refused since start (3 bad_padding)" in note
    assert "ops-app" not in note  # replays and stale requests say nothing of the secrets
    assert callbacks_note("") == "" and callbacks_note("not json") == ""
