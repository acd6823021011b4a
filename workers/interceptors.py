"""Time every activity into `riskflow_activity_seconds`, labelled by activity and outcome;
count notifications by channel and outcome."""

from __future__ import annotations

import time
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from riskflow.metrics import ACTIVITY_SECONDS, NOTIFICATIONS
from riskflow.notifications import NotificationRequest, NotificationResult


class _TimedActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        started = time.perf_counter()
        outcome = "failed"
        result: Any = None
        try:
            result = await super().execute_activity(input)
            outcome = "completed"
            return result
        finally:
            name = activity.info().activity_type
            ACTIVITY_SECONDS.labels(name, outcome).observe(time.perf_counter() - started)
            _count_notification(input, result)


def _count_notification(input: ExecuteActivityInput, result: Any) -> None:
    """Notifications by channel (configured names: bounded) and outcome."""
    request = input.args[0] if input.args else None
    if not isinstance(request, NotificationRequest):
        return
    status = result.status if isinstance(result, NotificationResult) else "failed"
    NOTIFICATIONS.labels(request.channel, status).inc()


class MetricsInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TimedActivity(next)
