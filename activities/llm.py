"""Call the LLM with a leased key: claim the send slot, resolve the secret here, classify.

Every failure is raised as an `ApplicationError` whose `type` tells the workflow what to do
(`riskflow.contracts.failures`, classified by `activities.providers.errors`); the lease is
released on every exit, with the outcome when there is one.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any, NoReturn

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.keypool import KeyPool, Outcome
from activities.providers import errors as provider_errors
from activities.providers.base import LLMClient, LLMResponse
from activities.providers.route import KeyRoutes, Route
from activities.releases import Releases
from activities.spend import SpendLedger
from riskflow.config.keys import KeyRing, SchedulerConfig
from riskflow.config.prices import TokenUsage
from riskflow.contracts import failures as E
from riskflow.contracts.lease import (
    LeasedCallInput,
    LeasedCallOutput,
    LeaseRequest,
    LLMCallInput,
    LLMCallOutput,
)
from riskflow.errors import ConfigError, KeyPoolUnavailable, UnknownKeyError
from riskflow.infra.metrics import KEY_WAITS, LLM_LATENCY, LLM_REQUESTS, PROVIDER_REFUSALS
from riskflow.infra.redis import RedisClient
from riskflow.llm_text.prompt import REPAIR_PROMPT, parse_answer
from riskflow.names import is_camera_snapshot_key
from riskflow.urls import UnsafeURLError, check_snapshot_url


class LLMActivities:
    def __init__(
        self,
        pool: KeyPool,
        ring: KeyRing,
        client: LLMClient | KeyRoutes,
        redis: RedisClient,
        scheduler: SchedulerConfig,
        reload_ring: Callable[[], KeyRing] | None = None,
        snapshot_url_hosts: Collection[str] = (),
        ledger: SpendLedger | None = None,
    ) -> None:
        """`snapshot_url_hosts`: the hosts a snapshot URL may name (`bridge.snapshot_url_hosts`;
        empty: any DNS name, see `riskflow.urls.check_snapshot_url`). `ledger`: where each
        answer's tokens are charged to its site's budget (None: not counted, as in a replay)."""
        self._pool = pool
        self._releases = Releases(pool)
        self._ledger = ledger
        self._snapshot_url_hosts = tuple(snapshot_url_hosts)
        self._ring = ring
        self._reload_ring = reload_ring
        # one client for every key (DashScope's native API), or each key's own route
        self._routes = (
            client if isinstance(client, KeyRoutes) else KeyRoutes({}, Route("dashscope", client))
        )
        self._redis = redis
        self._max_slot_wait = scheduler.max_slot_wait_seconds
        self._max_cooldown = scheduler.max_cooldown_seconds
        self._alarmed: set[tuple[str, str]] = set()

    @activity.defn(name="call_llm")
    async def call_llm(self, inp: LLMCallInput) -> LLMCallOutput:
        """One LLM request with the leased key. The lease is released on every exit: with the
        classified outcome, or (an exception, a Redis error, cancellation on shutdown) as
        "error" once the request may have been sent and "unused" before."""
        guard = _LeaseGuard(self, inp.lease.lease_id, inp.lease.expires_at_ms)
        try:
            return await self._call(inp, guard)
        finally:
            await guard.close()

    @activity.defn(name="lease_and_call_llm")
    async def lease_and_call(self, inp: LeasedCallInput) -> LeasedCallOutput:
        """Lease a key, claim its send slot, call, release: `call_llm` with its own lease, in
        one round trip instead of two. The lease never exists outside this activity: it is
        released on every exit as in `call_llm` (a worker killed mid-call leaves it to its
        TTL, as for `call_llm`). No key now: `output` None and the pool's wait in `wait`.
        Redis down raises `LeaseLost` (nothing sent; a grant whose answer was lost, or one cut
        short by cancellation, is released once Redis answers)."""
        task = inp.task
        step = task.failover[0] if task.failover else None  # the chain's first entry
        request = LeaseRequest.for_step(inp.assessment_id, task, step, inp.ttl_seconds)
        lease_id = uuid.uuid4().hex
        try:
            leased = await self._pool.lease(request, lease_id=lease_id)  # in line with waiters
        except (KeyPoolUnavailable, asyncio.CancelledError) as exc:
            until_ms = int((time.time() + inp.ttl_seconds) * 1000)
            await asyncio.shield(self._releases.release(lease_id, "unused", until_ms))
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ApplicationError(str(exc), type=E.LEASE_LOST) from None
        if leased.lease is None:
            KEY_WAITS.labels(leased.reason).inc()
            return LeasedCallOutput(wait=leased)
        output = await self.call_llm(LLMCallInput.for_step(task, leased.lease, step))
        return LeasedCallOutput(output=output, key_id=leased.lease.key_id)

    async def _call(self, inp: LLMCallInput, guard: _LeaseGuard) -> LLMCallOutput:
        try:
            api_key = self._secret(inp.lease.key_id)
        except UnknownKeyError as exc:
            raise ApplicationError(str(exc), type=E.KEY_UNAVAILABLE) from None
        messages, vision = await self._messages(inp)
        route = self._routes.route(inp.lease.key_id)
        asked = inp.task.model if vision else (inp.task.text_model or inp.task.model)
        pinned = inp.vision_model if vision else inp.text_model  # a failover entry's model
        model = pinned or route.model(vision, asked)
        await self._claim_slot(guard.lease_id, route.client.timeout_seconds)
        guard.sent = True
        started = time.perf_counter()
        response = await route.client.generate(
            model=model, messages=messages, api_key=api_key, vision=vision
        )
        latency_ms = (time.perf_counter() - started) * 1000
        output = await self._classify(inp, guard, model, response, latency_ms)
        update = {"model": model, "provider": route.provider, "image_sent": vision}
        return output.model_copy(update=update)

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

    async def _release(
        self, lease_id: str, outcome: Outcome, until_ms: int, **details: Any
    ) -> None:
        """Report the outcome; if Redis is down it is retried in the background until Redis
        answers (`activities.releases`), and an answer already received is not held up or
        thrown away for it."""
        await self._releases.release(lease_id, outcome, until_ms, **details)

    async def _claim_slot(self, lease_id: str, call_seconds: float) -> None:
        """Wait (briefly, heartbeating) until the key's windows have room for this request;
        `call_seconds`: the longest the request can still take (the lease must outlive it)."""
        deadline = time.monotonic() + self._max_slot_wait
        while True:
            try:
                stamp = await self._pool.stamp(lease_id, call_seconds)
            except KeyPoolUnavailable as exc:
                raise ApplicationError(str(exc), type=E.LEASE_LOST) from None
            if stamp.granted:
                await asyncio.sleep(stamp.wait_ms / 1000)  # the booked, paced send slot
                return
            if stamp.gone:
                raise ApplicationError(f"lease lost: {stamp.reason}", type=E.LEASE_LOST)
            if time.monotonic() + stamp.wait_ms / 1000 > deadline:
                raise ApplicationError(
                    f"key busy ({stamp.reason}) for {stamp.wait_ms} ms", type=E.KEY_BUSY
                )
            activity.heartbeat(stamp.reason)
            await asyncio.sleep(stamp.wait_ms / 1000)

    async def _messages(self, inp: LLMCallInput) -> tuple[list[dict[str, Any]], bool]:
        """The request's messages, and whether they carry an image (the vision endpoint)."""
        task, repair_of = inp.task, inp.repair_of
        user: Any = task.user_prompt
        if inp.without_history and task.user_prompt_without_history is not None:
            user = task.user_prompt_without_history
        vision = False
        if task.image_ref and not inp.text_only:
            image = await self._image(task.image_ref, task.camera_id)
            if image is not None:
                user, vision = [{"image": image}, {"text": user}], True
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

    async def _image(self, ref: str, camera_id: str) -> str | None:
        """The image to send for `ref` (`url:<URL>` or `redis:<key>`), or None (text-only):
        never a URL the SDK could read a local file through, never a Redis key other than one
        of this camera's snapshots."""
        store, _, location = ref.partition(":")
        if store == "url":
            try:
                return check_snapshot_url(location, self._snapshot_url_hosts)
            except UnsafeURLError as exc:
                activity.logger.warning("%s; text-only assessment", exc)
                return None
        if not is_camera_snapshot_key(camera_id, location):
            activity.logger.warning("%r is no snapshot of %s; text-only", location, camera_id)
            return None
        data = await self._redis.get(location)
        if data is None:  # the snapshot expired: assess from the detections alone
            activity.logger.warning("snapshot %s is gone; text-only assessment", location)
            return None
        raw = data.encode() if isinstance(data, str) else data
        return "data:image/jpeg;base64," + base64.b64encode(raw).decode()

    async def _classify(
        self,
        inp: LLMCallInput,
        guard: _LeaseGuard,
        model: str,
        response: LLMResponse,
        latency_ms: float,
    ) -> LLMCallOutput:
        verdict = provider_errors.classify(response)
        kind = verdict.kind
        usage = TokenUsage(input_tokens=response.input_tokens, output_tokens=response.output_tokens)
        if self._ledger is not None:  # what the provider charged, whatever the answer says
            await self._ledger.charge(inp.task.camera_id, model, usage, inp.task.site_id)
        LLM_REQUESTS.labels(inp.lease.key_id, kind).inc()
        LLM_LATENCY.labels(inp.lease.key_id).observe(latency_ms / 1000)
        if kind != E.OK:
            await self._fail(inp, guard, model, verdict, response)
        await guard.settle("ok", tokens_in=response.input_tokens, tokens_out=response.output_tokens)
        try:
            answer = parse_answer(response.text)
        except ValueError as exc:
            raise ApplicationError(
                f"unusable answer: {exc}",
                f"{exc}\n{response.text[:4000]}",
                type=E.MALFORMED_ANSWER,
                non_retryable=True,
            ) from None
        return LLMCallOutput(
            answer=answer, request_id=response.request_id, usage=usage, latency_ms=latency_ms
        )

    async def _fail(
        self,
        inp: LLMCallInput,
        guard: _LeaseGuard,
        model: str,
        verdict: provider_errors.Verdict,
        response: LLMResponse,
    ) -> NoReturn:
        """Release the lease with what the answer means for the key or its group; raise it."""
        kind, reason = verdict.kind, f"{response.code or response.status_code}: {response.message}"
        retry_after = None
        if kind == E.RATE_LIMITED:
            retry_after = provider_errors.retry_after_seconds(response.headers, self._max_cooldown)
            outcome: Outcome = "rate_limited_group" if verdict.scope == "group" else "rate_limited"
            await guard.settle(outcome, retry_after_seconds=retry_after)
        elif kind == E.INVALID_KEY:
            await guard.settle("invalid_key", detail=f"invalid key: {reason}"[:300])
        elif kind == E.ACCOUNT_REFUSED:
            group = inp.lease.quota_group or inp.lease.key_id
            self._alarm(
                kind,
                group,
                "account of quota group %s refused key %s: %s",
                group,
                inp.lease.key_id,
                reason,
            )
            await guard.settle("account_refused", detail=f"account refused: {reason}"[:300])
        elif kind == E.PROVIDER_ERROR:
            await guard.settle("error")
        else:
            if kind == E.CONFIGURATION_ERROR:
                self._alarm(kind, model, "model %s refuses the request: %s", model, reason)
            await guard.settle("refused")
        raise provider_errors.error(kind, response, retry_after)

    def _alarm(self, kind: str, subject: str, message: str, *args: object) -> None:
        """Count every occurrence; log an error the first time per kind and subject."""
        PROVIDER_REFUSALS.labels(kind, subject).inc()
        if (kind, subject) not in self._alarmed:
            self._alarmed.add((kind, subject))
            activity.logger.error(message, *args)


class _LeaseGuard:
    """Releases one lease exactly once: `settle` with the outcome, or `close` on any exit."""

    def __init__(self, owner: LLMActivities, lease_id: str, expires_at_ms: int) -> None:
        self._owner = owner
        self.lease_id = lease_id
        self._expires_at_ms = expires_at_ms
        self.sent = False
        self._settled = False

    async def settle(self, outcome: Outcome, **details: Any) -> None:
        if not self._settled:
            self._settled = True
            await self._owner._release(self.lease_id, outcome, self._expires_at_ms, **details)

    async def close(self) -> None:
        """Release an unsettled lease (shielded: a cancelled activity still releases)."""
        if not self._settled:
            outcome: Outcome = "error" if self.sent else "unused"
            await asyncio.shield(self.settle(outcome))
