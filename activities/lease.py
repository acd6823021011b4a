"""The key pool as a Temporal activity: lease a key id (never its secret)."""

from __future__ import annotations

import uuid

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
        and no LLM call is made without a lease (fail closed). Every attempt of this activity
        asks under one lease id (`attempt_lease_id`): an attempt whose grant never reached the
        workflow (its reply timed out, or it completed after its start-to-close timeout on a
        stalled worker) is followed by one that gets the same lease back, not a second one."""
        result = await self._pool.lease(request, lease_id=attempt_lease_id(activity.info()))
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


def attempt_lease_id(info: activity.Info) -> str:
    """The lease id of one scheduled activity, the same for each of its attempts (a retry has
    the run and activity id of the attempt before it; another activity, another id)."""
    scheduled = f"{info.workflow_namespace}/{info.workflow_run_id}/{info.activity_id}"
    return uuid.uuid5(uuid.NAMESPACE_URL, scheduled).hex
