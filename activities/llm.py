"""Call the LLM with a leased key: claim the send slot, resolve the secret here, classify.

Every failure is raised as an `ApplicationError` whose `type` tells the workflow what to do
(`riskflow.failure_kinds`, classified by `activities.providers.errors`); the lease is always
released with the outcome first.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.keypool import KeyPool, Outcome
from activities.providers import errors as provider_errors
from activities.providers.base import LLMClient, LLMResponse
from riskflow import failure_kinds as E
from riskflow.errors import ConfigError, KeyPoolUnavailable, UnknownKeyError
from riskflow.keyconfig import KeyRing, SchedulerConfig
from riskflow.metrics import LLM_LATENCY, LLM_REQUESTS
from riskflow.models import AssessmentTask, LLMCallInput, LLMCallOutput, TokenUsage
from riskflow.prompt import REPAIR_PROMPT, parse_answer
from riskflow.redis_client import RedisClient
from riskflow.urls import check_snapshot_url


class LLMActivities:
    def __init__(
        self,
        pool: KeyPool,
        ring: KeyRing,
        client: LLMClient,
        redis: RedisClient,
        scheduler: SchedulerConfig,
        reload_ring: Callable[[], KeyRing] | None = None,
    ) -> None:
        self._pool = pool
        self._ring = ring
        self._reload_ring = reload_ring
        self._client = client
        self._redis = redis
        self._max_slot_wait = scheduler.max_slot_wait_seconds

    @activity.defn(name="call_llm")
    async def call_llm(self, inp: LLMCallInput) -> LLMCallOutput:
        lease = inp.lease
        try:
            api_key = self._secret(lease.key_id)
        except UnknownKeyError as exc:
            await self._release(lease.lease_id, "unused")
            raise ApplicationError(str(exc), type=E.KEY_UNAVAILABLE) from None
        messages, vision = await self._messages(inp.task, inp.repair_of)
        await self._claim_slot(lease.lease_id)
        started = time.perf_counter()
        response = await self._client.generate(
            model=inp.task.model, messages=messages, api_key=api_key, vision=vision
        )
        latency_ms = (time.perf_counter() - started) * 1000
        return await self._classify(inp, response, latency_ms)

    def _secret(self, key_id: str) -> str:
        """The key's secret; a key added to the pool at run time is looked up again in the
        configuration once (`riskflow keys sync` adds keys without restarting workers)."""
        try:
            return self._ring.secret(key_id)
        except UnknownKeyError:
            if self._reload_ring is None:
                raise
            try:
                self._ring = self._reload_ring()
            except ConfigError as exc:
                activity.logger.warning("key configuration not reloaded: %s", exc)
                raise UnknownKeyError(key_id) from exc
            return self._ring.secret(key_id)

    async def _release(self, lease_id: str, outcome: Outcome, **details: Any) -> None:
        """Report the outcome; if Redis is down the lease expires on its own, and an answer
        already received is not thrown away for it."""
        try:
            await self._pool.release(lease_id, outcome, **details)
        except KeyPoolUnavailable as exc:
            activity.logger.warning("lease %s not released (%s); it will expire", lease_id, exc)

    async def _claim_slot(self, lease_id: str) -> None:
        """Wait (briefly, heartbeating) until the key's windows have room for this request."""
        deadline = time.monotonic() + self._max_slot_wait
        while True:
            stamp = await self._pool.stamp(lease_id)
            if stamp.granted:
                return
            if stamp.gone:
                raise ApplicationError(f"lease lost: {stamp.reason}", type=E.LEASE_LOST)
            if time.monotonic() + stamp.wait_ms / 1000 > deadline:
                await self._release(lease_id, "unused")
                raise ApplicationError(
                    f"key busy ({stamp.reason}) for {stamp.wait_ms} ms", type=E.KEY_BUSY
                )
            activity.heartbeat(stamp.reason)
            await asyncio.sleep(stamp.wait_ms / 1000)

    async def _messages(
        self, task: AssessmentTask, repair_of: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        user: Any = task.user_prompt
        vision = False
        if task.image_ref:
            image = await self._image(task.image_ref)
            if image is not None:
                user, vision = [{"image": image}, {"text": task.user_prompt}], True
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": task.system_prompt},
            {"role": "user", "content": user},
        ]
        if repair_of is not None:
            error, previous = repair_of.split("\n", 1) if "\n" in repair_of else ("", repair_of)
            messages += [
                {"role": "assistant", "content": previous[:4000]},
                {
                    "role": "user",
                    "content": REPAIR_PROMPT.format(error=error, previous=previous[:4000]),
                },
            ]
        return messages, vision

    async def _image(self, ref: str) -> str | None:
        store, _, location = ref.partition(":")
        if store == "url":
            return check_snapshot_url(location)  # never a local file for the SDK to upload
        data = await self._redis.get(location)
        if data is None:  # the snapshot expired: assess from the detections alone
            activity.logger.warning("snapshot %s is gone; text-only assessment", location)
            return None
        raw = data.encode() if isinstance(data, str) else data
        return "data:image/jpeg;base64," + base64.b64encode(raw).decode()

    async def _classify(
        self, inp: LLMCallInput, response: LLMResponse, latency_ms: float
    ) -> LLMCallOutput:
        lease_id = inp.lease.lease_id
        kind = provider_errors.classify(response)
        LLM_REQUESTS.labels(inp.lease.key_id, kind).inc()
        LLM_LATENCY.labels(inp.lease.key_id).observe(latency_ms / 1000)
        if kind == E.RATE_LIMITED:
            retry_after = provider_errors.retry_after_seconds(response.headers)
            await self._release(lease_id, "rate_limited", retry_after_seconds=retry_after)
            raise provider_errors.error(kind, response, retry_after)
        if kind == E.INVALID_KEY:
            await self._release(lease_id, "invalid_key", detail=f"invalid key: {response.code}")
            raise provider_errors.error(kind, response)
        if kind in (E.PROVIDER_ERROR,):
            await self._release(lease_id, "error")
            raise provider_errors.error(kind, response)
        await self._release(
            lease_id, "ok", tokens_in=response.input_tokens, tokens_out=response.output_tokens
        )
        if kind == E.CONTENT_REJECTED:
            raise provider_errors.error(kind, response)
        try:
            answer = parse_answer(response.text)
        except ValueError as exc:
            raise ApplicationError(
                f"unusable answer: {exc}",
                f"{exc}\n{response.text[:4000]}",
                type=E.MALFORMED_ANSWER,
                non_retryable=True,
            ) from None
        usage = TokenUsage(input_tokens=response.input_tokens, output_tokens=response.output_tokens)
        return LLMCallOutput(
            answer=answer, request_id=response.request_id, usage=usage, latency_ms=latency_ms
        )
