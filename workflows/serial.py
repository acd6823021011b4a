"""One local activity at a time in a workflow whose coroutines run side by side.

The Python SDK resolves local activities in completion order when it runs them and in
sequence order when it replays them (temporalio/sdk-python issues 1578 and 1881, open: "Local
activity resolutions regrouped on replay"). Two coroutines that each wait on a local activity
(the incident's loop writing its view, an operator's update writing it too, an assessment
beside the loop building its task) can then resume in another order on replay than they ran,
and a recorded result is handed to the wrong local activity: the replay fails ("Failed
decoding arguments" or a nondeterminism error) and the incident is stuck after a deploy or a
worker restart. `SerialLocal.held()` around every local activity of such a workflow keeps at
most one outstanding, so completion order is sequence order. Normal activities, timers and
child workflows are matched by id and need nothing.

Workflow code: the lock is asyncio's, which Temporal's workflow event loop runs
deterministically (waiters in the order they asked).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class SerialLocal:
    """Off until `enable()` (IncidentWorkflow: from the `tell-at-once` patch; a run that
    started before it keeps its commands)."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None

    def enable(self) -> None:
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        if self._lock is None:
            yield
            return
        async with self._lock:
            yield
