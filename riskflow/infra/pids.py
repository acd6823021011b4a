"""Whether a process id names a live process (pid files of the local stack and `riskflow up`)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while process `pid` runs (also one of another user's); False once it is gone or
    a zombie (exited, not yet reaped, which still answers kill(0))."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().split(") ", 1)[1][:1] != "Z"
    return True
