"""A supervisord event listener that keeps `<pid_dir>/<service>.pid` for every service
`riskflow up` runs: written when the service is RUNNING, removed when it stops, exits or is
given up. Run by supervisord as `python -m workers.supervisor.events PID_DIR`.

The protocol (supervisord's "Event Listener Notification Protocol"): write `READY\\n`; read a
header line of `key:value` tokens whose `len` is the payload's size in bytes; read the payload
(more `key:value` tokens: `processname`, `pid`, ...); write `RESULT 2\\nOK`; repeat. Nothing else
may go to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

LISTENER = "riskflow-pidfiles"
_GONE = {"PROCESS_STATE_STOPPED", "PROCESS_STATE_EXITED", "PROCESS_STATE_FATAL"}
_GONE |= {"PROCESS_STATE_BACKOFF", "PROCESS_STATE_UNKNOWN"}


def tokens(text: str) -> dict[str, str]:
    """`a:1 b:2` -> {"a": "1", "b": "2"} (tokens without a colon are skipped)."""
    pairs = (token.split(":", 1) for token in text.split())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def apply(pid_dir: Path, event: str, payload: dict[str, str]) -> None:
    """Write or remove one service's pid file for one state change."""
    name = payload.get("processname", "")
    if not name or name == LISTENER or "/" in name:
        return
    pid_file = pid_dir / f"{name}.pid"
    if event == "PROCESS_STATE_RUNNING" and payload.get("pid", "").isdigit():
        temporary = pid_file.with_suffix(".pid.tmp")
        temporary.write_text(payload["pid"])
        temporary.replace(pid_file)
    elif event in _GONE:
        pid_file.unlink(missing_ok=True)


def serve(pid_dir: Path, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Answer events until stdin closes."""
    pid_dir.mkdir(parents=True, exist_ok=True)
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        header_line = stdin.readline()
        if not header_line:
            return
        header = tokens(header_line.decode())
        payload = stdin.read(int(header.get("len", "0"))).decode()
        apply(pid_dir, header.get("eventname", ""), tokens(payload.split("\n", 1)[0]))
        stdout.write(b"RESULT 2\nOK")
        stdout.flush()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)
