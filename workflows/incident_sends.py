"""The incident's notifications in flight: each message to each channel is a normal activity,
run beside the incident's loop, so a slow, throttled or dead channel delays nobody else (the
other channels of the level go at once, later levels go on time, frames and operator actions
are handled meanwhile). Pure workflow code.

A send that keeps failing ends as failed (`NOTIFY_SEND_RETRY`) and, where its escalation
level names fallback channels, the same message goes to each of them. Sends still in flight
when the incident continues as new are carried over and started again in the next run (the
idempotency key makes a repeat of a delivered message answer `already_sent`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from riskflow.contracts.notifications import NotificationRequest, NotificationResult
    from workflows.policies import NOTIFY_SEND_RETRY

# One attempt: a vendor that answers within its own deadline, or a connection that fails.
SEND_ATTEMPT_SECONDS = 30.0

Done = Callable[[NotificationRequest, NotificationResult | None, str], None]


class Sends:
    """Sends in flight, by idempotency key. `done(request, result, error)` is called when
    one ends: `result` when delivered (or already delivered), else None and the error."""

    def __init__(self, done: Done) -> None:
        self._done = done
        self._running: dict[str, NotificationRequest] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, request: NotificationRequest) -> None:
        """Send `request` beside the loop; a key already in flight is not sent twice."""
        if request.idempotency_key in self._running:
            return
        self._running[request.idempotency_key] = request
        task = asyncio.create_task(self._send(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> list[NotificationRequest]:
        """What has not ended yet, oldest first (continue-as-new carries it)."""
        return list(self._running.values())

    def idle(self) -> bool:
        return not self._running

    async def _send(self, request: NotificationRequest) -> None:
        try:
            result = await workflow.execute_activity_method(
                NotifyActivities.notify,
                request,
                start_to_close_timeout=timedelta(seconds=SEND_ATTEMPT_SECONDS),
                retry_policy=NOTIFY_SEND_RETRY,
            )
        except ActivityError as exc:
            self._running.pop(request.idempotency_key, None)
            self._done(request, None, str(exc.cause or exc))
            return
        self._running.pop(request.idempotency_key, None)
        self._done(request, result, "")
