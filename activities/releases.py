"""Lease releases that Redis did not take, retried in the background until it answers.

A lease holds one of its key's concurrency slots until it is released or its TTL ends
(`scheduler.lease_ttl_seconds`, two minutes by default). A release lost to an unreachable Redis
(a stall, a restart, a reply that timed out) would keep the slot for the rest of the TTL after
Redis is back; an outage loses the release of every lease in flight, so up to every key's whole
concurrency, and assessments would wait "no key: concurrency" long after the outage ended.
Retried here, the slots are free as soon as Redis answers again. Retrying is safe: releasing
a lease that is already released (the lost reply's release did run) answers False and changes
nothing.

No temporalio import: plain async code, used by `activities.llm`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from activities.keypool import KeyPool, Outcome
from riskflow.errors import KeyPoolUnavailable

logger = logging.getLogger(__name__)


class Releases:
    """Releases one worker process reports, each retried until Redis takes it."""

    def __init__(
        self, pool: KeyPool, first_retry_seconds: float = 0.5, max_retry_seconds: float = 5.0
    ) -> None:
        self._pool = pool
        self._first = first_retry_seconds
        self._max = max_retry_seconds
        self._retrying: set[asyncio.Task[None]] = set()

    @property
    def retrying(self) -> int:
        """Releases waiting for Redis to answer."""
        return len(self._retrying)

    async def release(self, lease_id: str, outcome: Outcome, until_ms: int, **details: Any) -> None:
        """Report `outcome` for the lease now. When Redis cannot be reached, keep trying in the
        background until it answers, or until `until_ms` (epoch milliseconds: the lease's
        expiry, when it frees itself); the caller goes on at once (an answer already received
        is not held up by Redis)."""
        try:
            await self._pool.release(lease_id, outcome, **details)
        except KeyPoolUnavailable as exc:
            logger.warning("lease %s not released (%s); retried until Redis answers", lease_id, exc)
            task = asyncio.create_task(self._retry(lease_id, outcome, until_ms, details))
            self._retrying.add(task)
            task.add_done_callback(self._retrying.discard)

    async def _retry(
        self, lease_id: str, outcome: Outcome, until_ms: int, details: dict[str, Any]
    ) -> None:
        delay = self._first
        while time.time() * 1000 + delay * 1000 < until_ms:
            await asyncio.sleep(delay)
            try:
                await self._pool.release(lease_id, outcome, **details)
            except KeyPoolUnavailable:
                delay = min(delay * 2, self._max)
                continue
            logger.info("lease %s released once Redis answered again", lease_id)
            return
        logger.warning("lease %s not released before it expires; it frees itself", lease_id)
