"""The key pool as a Temporal activity: lease a key id (never its secret)."""

from __future__ import annotations

from temporalio import activity

from activities.keypool import KeyPool
from riskflow.contracts.lease import LeaseRequest, LeaseResult
from riskflow.infra.metrics import KEY_WAIT_SECONDS, KEY_WAITS


class LeaseActivities:
    def __init__(self, pool: KeyPool) -> None:
        self._pool = pool

    @activity.defn(name="acquire_lease")
    async def acquire_lease(self, request: LeaseRequest) -> LeaseResult:
        """A lease now, or when one may be granted. Redis down raises: Temporal retries it,
        and no LLM call is made without a lease (fail closed)."""
        result = await self._pool.lease(request)
        if result.lease is None:
            KEY_WAITS.labels(result.reason).inc()
            if result.retry_after_seconds > 0:
                KEY_WAIT_SECONDS.observe(result.retry_after_seconds)
            activity.logger.info(
                "no key for %s: %s, retry in %.3fs",
                request.assessment_id,
                result.reason,
                result.retry_after_seconds,
            )
        return result
