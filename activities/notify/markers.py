"""Idempotency markers: one Redis string per idempotency key, so one key is at most one message.

States (the value, JSON): `sending` (claimed with SET NX just before the request is made),
`sent` (with the vendor's detail), `unknown` (the request may have reached the vendor but no
answer came). Every marker lives `marker_ttl_seconds`; the age of a claim is read from its
remaining TTL, so no clock but Redis' is involved.

The crash between sending and recording `sent` (a worker killed with -9) leaves `sending`.
A retry that finds a claim younger than `claim_seconds` waits (another attempt may still be
sending); an older one is taken as `unknown`. Unknown is not sent again — at most one message
— unless the channel's receiver dedupes by the idempotency key (the generic webhook sends it
as a header), where sending again is harmless. Redis unreachable: the message is sent without
a claim (`NotifyActivities._unguarded`: an alarm never waits for Redis), at the price of a
possible second message when that attempt's outcome is unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from riskflow.infra.redis import RedisClient
from riskflow.names import notification_marker_key

State = Literal["sending", "sent", "unknown"]


@dataclass(frozen=True)
class Prior:
    """What an earlier attempt of the same key left: its state, detail and the claim's age
    in seconds."""

    state: State
    detail: str
    age_seconds: float


class Markers:
    def __init__(self, redis: RedisClient, claim_seconds: float, ttl_seconds: int) -> None:
        self._redis = redis
        self._claim_seconds = claim_seconds
        self._ttl_ms = ttl_seconds * 1000

    @property
    def claim_seconds(self) -> float:
        return self._claim_seconds

    async def claim(self, key: str) -> Prior | None:
        """Claim `key` for sending: None when this attempt holds it now, else what was there."""
        name = notification_marker_key(key)
        for _ in range(3):  # a marker that expires between SET NX and GET: try again
            if await self._redis.set(name, _value("sending"), nx=True, px=self._ttl_ms):
                return None
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(name)
                pipe.pttl(name)
                raw, pttl = await pipe.execute()
            if raw is None:
                continue
            data = json.loads(raw)
            age = max(0.0, (self._ttl_ms - max(int(pttl), 0)) / 1000)
            return Prior(state=data["state"], detail=data.get("detail", ""), age_seconds=age)
        raise RuntimeError(f"idempotency marker of {key!r} keeps expiring")

    async def retake(self, key: str) -> None:
        """Send again under an unknown outcome (channels whose receivers dedupe)."""
        await self._redis.set(notification_marker_key(key), _value("sending"), px=self._ttl_ms)

    async def sent(self, key: str, detail: str) -> None:
        await self._redis.set(notification_marker_key(key), _value("sent", detail), px=self._ttl_ms)

    async def unknown(self, key: str, detail: str) -> None:
        name = notification_marker_key(key)
        await self._redis.set(name, _value("unknown", detail), px=self._ttl_ms)

    async def release(self, key: str) -> None:
        """Not delivered: a retry may send."""
        await self._redis.delete(notification_marker_key(key))


def _value(state: State, detail: str = "") -> str:
    return json.dumps({"state": state, "detail": detail[:500]})
