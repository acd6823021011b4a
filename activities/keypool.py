"""The cluster-wide API key pool: one Redis, atomic Lua, no per-process state.

On Redis Cluster the pool's keys share the hash tag `{pool}` and so one slot; every script
call declares each key it may touch (`Layout.names`), as Cluster requires. The layout (key ids
and their quota groups) is read from Redis and kept; when another process changed the pool,
the script refuses with `STALE_KEYS` before writing and the call reads the layout again.

Selection: among keys that can take a call now, the one with the most spare capacity (the
smallest fraction used of its QPS, RPM, concurrency and quota-group limits), ties to the least
recently used. Spare capacity rather than plain round-robin spreads load in proportion to
each key's limits, so a small key is not driven into 429s while a large one idles.

No temporalio import here: the pool is plain async code, wrapped by `activities.lease`.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any, Literal

from redis.exceptions import RedisError, ResponseError

from riskflow.config.keys import KeysConfig, SchedulerConfig
from riskflow.contracts.lease import KeyLease, LeaseRequest, LeaseResult
from riskflow.errors import KeyNotInPool, KeyPoolUnavailable
from riskflow.infra.redis import RedisClient
from riskflow.names import KEYPOOL_PREFIX

logger = logging.getLogger(__name__)

# ok: answered; rate_limited(_group): cool the key (or its whole quota group) down;
# invalid_key: disable the key; account_refused: disable every key of its quota group;
# error: short cooldown of the key; refused: the request was refused, the key is fine;
# unused: nothing was sent.
Outcome = Literal[
    "ok",
    "rate_limited",
    "rate_limited_group",
    "invalid_key",
    "account_refused",
    "error",
    "refused",
    "unused",
]

_SCRIPT = resources.files("activities").joinpath("keypool.lua").read_text(encoding="utf-8")
_TIME = "return redis.call('TIME')"  # run on the pool's own node (KEYS[1] names its slot)
_STALE = "STALE_KEYS"
_LAYOUT_TRIES = 5


@dataclass(frozen=True)
class Layout:
    """The pool's key ids with their quota groups, as the script needs them declared:
    `names` lists every Redis key an operation may touch (Redis Cluster requires each one in
    KEYS), `argv` tells the script which is which. See keypool.lua for the order."""

    prefix: str
    keys: tuple[tuple[str, str], ...]  # (key id, quota group or "")

    @cached_property
    def groups(self) -> list[str]:
        return sorted({group for _, group in self.keys if group})

    @cached_property
    def _per_key(self) -> list[str]:
        p = self.prefix
        names: list[str] = []
        for key_id, _ in self.keys:
            kinds = ("cfg", "st", "w", "inf", "stats", "tw")
            names += [f"{p}:{kind}:{key_id}" for kind in kinds]
        for group in self.groups:
            names += [f"{p}:gcfg:{group}", f"{p}:gw:{group}", f"{p}:gtw:{group}"]
        return names

    def names(self, lease_id: str) -> list[str]:
        p = self.prefix
        waiting = [f"{p}:guard", f"{p}:wfair", f"{p}:waiters", f"{p}:wseen"]
        return [f"{p}:keys", f"{p}:lease:{lease_id}", *self._per_key, *waiting]

    @cached_property
    def argv(self) -> str:
        return json.dumps({"keys": [list(k) for k in self.keys], "groups": self.groups})


@dataclass(frozen=True)
class Stamp:
    """The answer to "may I send now?": yes, at `sent_at_ms` (Redis' clock), which is
    `wait_ms` from now: the caller sleeps that long, then sends; or not yet, ask again in
    `wait_ms`; or never (`gone`)."""

    granted: bool
    wait_ms: int = 0
    sent_at_ms: int = 0
    reason: str = ""
    gone: bool = False  # the lease expired, was released, or its key was disabled


@dataclass(frozen=True)
class KeyState:
    """One key as `riskflow keys status` shows it; use counts are calls in the last second and
    the last minute, `cooldown_remaining_ms` in milliseconds."""

    key_id: str
    quota_group: str
    qps_limit: int
    rpm_limit: int
    max_concurrency: int
    enabled: bool
    disabled_reason: str
    used_last_second: int
    used_last_minute: int
    in_flight: int
    cooldown_remaining_ms: int
    strikes: int
    counters: dict[str, int]


class KeyPool:
    def __init__(
        self, redis: RedisClient, scheduler: SchedulerConfig, prefix: str = KEYPOOL_PREFIX
    ):
        if not re.search(r"\{[^{}]+\}", prefix):
            raise ValueError(f"key pool prefix {prefix!r} needs a hash tag such as {{pool}}")
        self._redis = redis
        self._cfg = scheduler
        self._prefix = prefix
        self._script = redis.register_script(_SCRIPT)
        self._time = redis.register_script(_TIME)
        top = max(scheduler.window_guard_ms, scheduler.max_window_guard_ms)
        halving_ms = int(scheduler.window_guard_halving_seconds * 1000)
        self._guard_spec = f"{scheduler.window_guard_ms},{top},{halving_ms}"
        self._layout: Layout | None = None

    async def _read_layout(self) -> Layout:
        """The pool's key ids and groups as Redis has them now."""
        ids = sorted(_s(m) for m in await self._redis.smembers(self._k("keys")))
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hget(self._k("cfg", key_id), "group")
            groups = await pipe.execute()
        pairs = tuple((k, _s(g or "")) for k, g in zip(ids, groups, strict=True))
        return Layout(self._prefix, pairs)

    async def _run(self, op: str, lease_id: str, *args: Any) -> Any:
        """One script operation with every key declared; when the pool's keys changed since
        the layout was read (another process ran `sync`), read it again and retry."""
        try:
            for _ in range(_LAYOUT_TRIES):
                layout = self._layout or await self._read_layout()
                self._layout = layout
                try:
                    return await self._script(
                        keys=layout.names(lease_id), args=[layout.argv, op, lease_id, *args]
                    )
                except ResponseError as exc:
                    if not str(exc).startswith(_STALE):
                        raise
                    self._layout = None
        except (RedisError, OSError) as exc:
            raise KeyPoolUnavailable(f"key pool store unreachable: {exc}") from exc
        raise KeyPoolUnavailable(f"the key pool's key list changed {_LAYOUT_TRIES} times in a row")

    async def lease(self, request: LeaseRequest, lease_id: str | None = None) -> LeaseResult:
        """`acquire` for a `LeaseRequest` (the one shape both lease activities ask in)."""
        return await self.acquire(
            request.ttl_seconds,
            request.quota_groups,
            request.tokens,
            waiter=request.waiter,
            severity=request.severity,
            camera=request.camera_id,
            lease_id=lease_id,
        )

    async def acquire(
        self,
        ttl_seconds: float | None = None,
        quota_groups: list[str] | None = None,
        tokens: int = 0,
        waiter: str = "",
        severity: int = 0,
        camera: str = "",
        lease_id: str | None = None,
    ) -> LeaseResult:
        """A lease on the key with the most spare capacity, valid `ttl_seconds` (default: the
        scheduler's), or when one may be granted (`retry_after_seconds`; -1.0 when every key is
        disabled). `quota_groups`: only keys of these groups (a key without a group is
        `key:<key_id>`; None or empty: any key). Raises KeyPoolUnavailable when Redis cannot
        be reached. `tokens`: the call's estimated tokens, reserved against the key's and its
        group's tokens-per-minute limits until `release` settles them with the real count.
        `waiter` (an assessment id) of `severity` from `camera`, with the scheduler's
        `severity_first`: refused while a waiter ahead of it is waiting (more severe; or as
        severe and earlier in the camera-fair order, see keypool.lua), and below the
        scheduler's `reserved_min_severity` refused the last `reserved_share` of each key's
        capacity; a refused waiter is recorded as waiting. `lease_id` (default: a new one) makes
        asking again idempotent: a lease already granted under that id, still held, is
        answered again (an answer lost to a timeout costs no second slot)."""
        ttl_ms = int((ttl_seconds or self._cfg.lease_ttl_seconds) * 1000)
        lease_id = lease_id or uuid.uuid4().hex
        groups = json.dumps(sorted(set(quota_groups or [])))
        cfg = self._cfg
        reply = await self._run(
            "acquire",
            lease_id,
            ttl_ms,
            self._guard_spec,
            groups,
            max(tokens, 0),
            waiter if cfg.severity_first else "",
            severity,
            cfg.reserved_share,
            cfg.reserved_min_severity,
            int(cfg.waiter_ttl_seconds * 1000),
            camera,
            int(cfg.camera_fairness_seconds * 1000),
        )
        if int(reply[0]) == 1:
            lease = KeyLease(
                lease_id=lease_id,
                key_id=_s(reply[1]),
                quota_group=_s(reply[2]),
                expires_at_ms=int(reply[3]),
            )
            return LeaseResult(lease=lease)
        wait_ms, reason = int(reply[1]), _s(reply[2])
        if wait_ms < 0:
            return LeaseResult(retry_after_seconds=-1.0, reason=reason)
        return LeaseResult(retry_after_seconds=max(wait_ms, 1) / 1000.0, reason=reason)

    async def stamp(self, lease_id: str, needed_seconds: float = 0.0) -> Stamp:
        """Claim the send slot of a lease right before the request goes out: granted (send in
        `wait_ms` milliseconds, at `sent_at_ms` on Redis' clock: the key's next paced slot),
        not yet (ask again in `wait_ms` milliseconds), or gone
        (also when the lease would expire within `needed_seconds`, the longest the request
        can still take). Raises KeyPoolUnavailable when Redis cannot be reached."""
        needed_ms = int(needed_seconds * 1000)
        cfg = self._cfg
        reply = await self._run(
            "stamp",
            lease_id,
            self._guard_spec,
            needed_ms,
            -1 if cfg.pacing_margin is None else cfg.pacing_margin,
        )
        code = int(reply[0])
        if code == 1:
            return Stamp(granted=True, sent_at_ms=int(reply[1]), wait_ms=int(reply[3]))
        if code == 0:
            return Stamp(granted=False, wait_ms=max(int(reply[1]), 1), reason=_s(reply[2]))
        return Stamp(granted=False, gone=True, reason=_s(reply[2]))

    async def release(
        self,
        lease_id: str,
        outcome: Outcome,
        *,
        retry_after_seconds: float | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
        detail: str = "",
    ) -> bool:
        """Report a lease's outcome and free its concurrency slot. `retry_after_seconds` (from a
        429; 0 means at once, None the pool's own escalating cooldown) sets the cooldown of the
        key, or of every key of its quota group for "rate_limited_group"; `detail` is the
        reason shown for a disabled key or group. `tokens_in` + `tokens_out` (the provider's
        count; 0: none reported) replace the tokens reserved at the grant. False when the
        lease had already expired or been released. Raises KeyPoolUnavailable when Redis cannot
        be reached."""
        cfg = self._cfg
        reply = await self._run(
            "release",
            lease_id,
            outcome,
            -1 if retry_after_seconds is None else int(retry_after_seconds * 1000),
            int(cfg.key_cooldown_seconds * 1000),
            int(cfg.max_cooldown_seconds * 1000),
            int(cfg.error_cooldown_seconds * 1000),
            tokens_in,
            tokens_out,
            detail or outcome,
            self._guard_spec,
        )
        if not isinstance(reply, list):
            return False  # the lease had expired or been released
        if int(reply[1]) > 0:
            logger.warning(
                "a rate limit the key pool's windows did not foresee (key lease %s): window "
                "guard raised to %d ms (scheduler.window_guard_ms %d, max %d)",
                lease_id, int(reply[1]), cfg.window_guard_ms, cfg.max_window_guard_ms,
            )  # fmt: skip
        return True

    # -- configuration and operations -------------------------------------------------------

    async def window_guard_ms(self) -> int:
        """The window guard now, in milliseconds: `scheduler.window_guard_ms`, or more while a
        rate limit the windows did not foresee has raised it (see keypool.lua). Raises
        KeyPoolUnavailable when Redis cannot be reached."""
        return int(await self._run("guard", "", self._guard_spec))

    async def _now_ms(self) -> int:
        """Redis' clock, the one the scripts use."""
        seconds, micros = await self._time(keys=[self._k("keys")])
        return int(seconds) * 1000 + int(micros) // 1000

    def _k(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    async def sync(self, config: KeysConfig) -> None:
        """Make the pool's keys, limits and groups those of `config` (at run time, no restart)."""
        wanted = {k.key_id for k in config.api_keys}
        try:
            current = {_s(m) for m in await self._redis.smembers(self._k("keys"))}
            async with self._redis.pipeline(transaction=True) as pipe:
                for name, group in config.quota_groups.items():
                    pipe.hset(
                        self._k("gcfg", name),
                        mapping={
                            "qps": group.qps_limit,
                            "rpm": group.rpm_limit,
                            "tpm": group.tpm_limit or 0,
                        },
                    )
                for key in config.api_keys:
                    pipe.hset(
                        self._k("cfg", key.key_id),
                        mapping={
                            "qps": key.qps_limit,
                            "rpm": key.rpm_limit,
                            "tpm": key.tpm_limit or 0,
                            "conc": key.max_concurrency,
                            "enabled": int(key.enabled),
                            "group": key.quota_group,
                        },
                    )
                    pipe.sadd(self._k("keys"), key.key_id)
                for gone in current - wanted:
                    pipe.srem(self._k("keys"), gone)
                    pipe.delete(self._k("cfg", gone))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise KeyPoolUnavailable(f"key pool store unreachable: {exc}") from exc
        self._layout = None

    async def set_disabled(self, key_id: str, reason: str | None) -> None:
        """Disable a key with a reason (an operator, or an invalid-key answer); None re-enables.
        Raises KeyNotInPool for a key id the pool does not have (a typo would otherwise
        leave the real key in rotation)."""
        if not await self._redis.sismember(self._k("keys"), key_id):
            raise KeyNotInPool(key_id)
        state = self._k("st", key_id)
        if reason is None:
            await self._redis.hset(
                state, mapping={"disabled": "", "strikes": 0, "cooldown_until": 0}
            )
        else:
            await self._redis.hset(state, "disabled", reason)

    async def snapshot(self) -> list[KeyState]:
        """Every key's limits, use in the last second and minute, leases, cooldown, counters."""
        now = await self._now_ms()
        ids = sorted(_s(m) for m in await self._redis.smembers(self._k("keys")))
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hgetall(self._k("cfg", key_id))
                pipe.hgetall(self._k("st", key_id))
                pipe.zcount(self._k("w", key_id), f"({now - 1000}", "+inf")
                pipe.zcount(self._k("w", key_id), f"({now - 60000}", "+inf")
                pipe.zcount(self._k("inf", key_id), f"({now}", "+inf")
                pipe.hgetall(self._k("stats", key_id))
            rows = await pipe.execute()
        return [_state(key_id, now, *rows[i * 6 : i * 6 + 6]) for i, key_id in enumerate(ids)]

    async def group_usage(self, groups: list[str]) -> dict[str, tuple[int, int]]:
        """Calls of each quota group in the last second and the last minute:
        {group: (calls_last_second, calls_last_minute)}."""
        now = await self._now_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            for group in groups:
                pipe.zcount(self._k("gw", group), f"({now - 1000}", "+inf")
                pipe.zcount(self._k("gw", group), f"({now - 60000}", "+inf")
            rows = await pipe.execute()
        return {g: (int(rows[2 * i]), int(rows[2 * i + 1])) for i, g in enumerate(groups)}


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(mapping: dict[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in mapping.items()}


def _state(
    key_id: str, now: int, cfg: Any, st: Any, c1: Any, c60: Any, inf: Any, stats: Any
) -> KeyState:
    cfg, st = _decode(cfg), _decode(st)
    return KeyState(
        key_id=key_id,
        quota_group=cfg.get("group", ""),
        qps_limit=int(cfg.get("qps", 0)),
        rpm_limit=int(cfg.get("rpm", 0)),
        max_concurrency=int(cfg.get("conc", 0)),
        enabled=cfg.get("enabled") == "1" and not st.get("disabled"),
        disabled_reason=st.get("disabled", "")
        or ("disabled in config" if cfg.get("enabled") != "1" else ""),
        used_last_second=int(c1),
        used_last_minute=int(c60),
        in_flight=int(inf),
        cooldown_remaining_ms=max(0, int(float(st.get("cooldown_until", 0) or 0)) - now),
        strikes=int(st.get("strikes", 0) or 0),
        counters={k: int(v) for k, v in _decode(stats).items()},
    )
