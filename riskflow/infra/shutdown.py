"""Stop cleanly on signals: long-running entry points wait on the event `stop_on_signals`
returns; a command whose cleanup is its coroutine's `finally` (the demo) runs under
`cancel_on_signals`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# What ends a foreground command besides Ctrl-C: `kill`, a supervisor, a closed terminal.
TERMINATING = (signal.SIGTERM, signal.SIGHUP)


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def cancel_on_signals(
    work: Coroutine[Any, Any, T], signals: tuple[signal.Signals, ...] = TERMINATING
) -> T:
    """Await `work`; the first of `signals` cancels it as Ctrl-C cancels `asyncio.run`'s
    task, so its `finally` blocks run (without a handler the process would just die and
    leave what it started running). Signals that come while it cleans up are ignored. Raises
    CancelledError when a signal cancelled it."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[signal.Signals] = []

    def cancel(sig: signal.Signals) -> None:
        if not received:
            received.append(sig)
            task.cancel(f"{sig.name} received")

    for sig in signals:
        loop.add_signal_handler(sig, cancel, sig)
    try:
        return await work
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
