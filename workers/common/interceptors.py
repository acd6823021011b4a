"""Time every activity into `riskflow_activity_seconds`, labelled by activity and outcome."""

from __future__ import annotations

import time
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from riskflow.infra.metrics import ACTIVITY_SECONDS


class _TimedActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await super().execute_activity(input)
            outcome = "completed"
            return result
        finally:
            name = activity.info().activity_type
            ACTIVITY_SECONDS.labels(name, outcome).observe(time.perf_counter() - started)


class MetricsInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TimedActivity(next)
