"""Stop cleanly on SIGINT/SIGTERM: entry points wait on the event this returns."""

from __future__ import annotations

import asyncio
import signal


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
