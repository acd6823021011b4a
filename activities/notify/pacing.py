"""Pacing per robot, shared by every worker: the sliding windows, parked messages and the
vendor's "too fast" blocks of one robot live in Redis and change only through pacing.lua.

A robot is one webhook URL (`Robot.id` is a digest of it, so two channels naming the same
robot share its budget). Its windows come from its vendor's published limits less a margin
(`activities.notify.limits`); every send takes a slot, logged by time in one sorted set, and a
slot is free when each window holds fewer sends than its limit, counted `guard_ms` longer than
the vendor counts it (the vendor stamps arrival, the script stamps the slot on Redis' clock).

Three answers to `acquire`:
- `Granted`: a slot is this message's; every message parked for the robot came with it (now
  `taken` by this digest), so the caller sends one digest of them all, or its own message alone.
- `Held`: no slot (a window is full, or the vendor blocked the robot): the message is parked
  and the caller's activity retries after `wait_seconds` (Temporal's timer: no worker sleeps).
- `Taken`: a digest already took this parked message; `taken_outcome` says what that means for
  the message's own attempt: merged (sent inside the digest), in flight, or lost (the digest's
  outcome is unknown: like a message whose answer was lost, it is not sent again).

A digest's outcome is written back with `settle` (sent or unknown) or `restore` (certainly not
delivered: parked again). `block` records a vendor's "too fast" answer: the robot is closed for
everyone until the block ends, the refused message parked. The clock is Redis' (`TIME` in the
script) unless a `clock` is given (tests script time with it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from activities.notify.digest import Parked
from activities.notify.limits import Window
from riskflow.infra.redis import RedisClient
from riskflow.names import notification_pacing_keys

_SCRIPT = resources.files("activities.notify").joinpath("pacing.lua").read_text(encoding="utf-8")
DEFAULT_GUARD_MS = 250


@dataclass(frozen=True)
class Robot:
    """One robot: `id` (from its URL), its `vendor` and the `windows` it is paced by."""

    id: str
    vendor: str
    windows: tuple[Window, ...]

    @staticmethod
    def id_of(url: str) -> str:
        """A robot's id: a digest of its URL (which holds its token, so never the URL)."""
        return hashlib.sha256(url.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Granted:
    """A slot is the caller's; `parked` are the other messages its digest must carry."""

    parked: tuple[Parked, ...]


@dataclass(frozen=True)
class Held:
    """No slot: the message is parked (`parked` messages wait now); the robot frees in
    `wait_seconds`, `blocked` when the vendor closed it."""

    wait_seconds: float
    blocked: bool
    parked: int


TakenState = Literal["sending", "sent", "unknown"]


@dataclass(frozen=True)
class Taken:
    """A digest (`digest`, its slot token) took this parked message: its `state`, the
    digest's `detail`, and how long ago the state was written."""

    state: TakenState
    digest: str
    detail: str
    age_seconds: float


@dataclass(frozen=True)
class Merged:
    detail: str


@dataclass(frozen=True)
class InFlight:
    wait_seconds: float


@dataclass(frozen=True)
class Lost:
    detail: str


def taken_outcome(
    taken: Taken, claim_seconds: float, send_seconds: float
) -> Merged | InFlight | Lost:
    """What a digest that took a message means for the message's own attempt: `Merged` once
    the digest was sent; `InFlight` while it is being sent (come back after `send_seconds`, the
    send's own deadline, or when the claim runs out); `Lost` when its outcome is unknown or its
    sender died (older than `claim_seconds`): not sent again, as `markers` does for a robot."""
    if taken.state == "sent":
        return Merged(taken.detail)
    if taken.state == "sending" and taken.age_seconds < claim_seconds:
        return InFlight(max(1.0, min(claim_seconds - taken.age_seconds, send_seconds + 1.0)))
    return Lost(taken.detail or "the digest that carried it died while sending")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Pacer:
    """Runs pacing.lua for a robot (see the module docstring). `ttl_seconds`: how long parked
    and taken entries are kept (the idempotency markers' lifetime); `guard_ms`: how much longer
    than the vendor each window is counted; `clock`: seconds, else Redis' TIME."""

    def __init__(
        self,
        redis: RedisClient,
        ttl_seconds: int,
        guard_ms: int = DEFAULT_GUARD_MS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._script = redis.register_script(_SCRIPT)
        self._ttl_ms = ttl_seconds * 1000
        self._guard_ms = guard_ms
        self._clock = clock

    async def _run(self, robot: Robot, op: str, *args: str | int) -> Any:
        now = "" if self._clock is None else str(int(self._clock() * 1000))
        keys = notification_pacing_keys(robot.id)
        return await self._script(keys=keys, args=[op, now, self._ttl_ms, *args])

    async def acquire(self, robot: Robot, entry: Parked, token: str) -> Granted | Held | Taken:
        """A slot for `entry`'s message, logged as `token`; see the module docstring."""
        spans = [str(part) for w in robot.windows for part in (w.limit, int(w.seconds * 1000))]
        reply = await self._run(
            robot,
            "acquire",
            entry.key,
            entry.to_json(),
            token,
            self._guard_ms,
            len(robot.windows),
            *spans,
        )
        kind = _s(reply[0])
        if kind == "granted":
            return Granted(tuple(Parked.from_json(raw) for raw in reply[1:]))
        if kind == "held":
            return Held(int(reply[1]) / 1000, bool(int(reply[2])), int(reply[3]))
        data = json.loads(reply[1])
        age = max(0, int(reply[2]) - int(data["at"])) / 1000
        return Taken(data["state"], data["digest"], data["detail"], age)

    async def settle(
        self, robot: Robot, token: str, keys: list[str], state: TakenState, detail: str
    ) -> int:
        """Record the outcome (`sent` or `unknown`) of digest `token` for the `keys` it took."""
        if not keys:
            return 0
        return int(await self._run(robot, "settle", token, state, detail[:500], *keys))

    async def restore(self, robot: Robot, token: str, keys: list[str]) -> int:
        """Digest `token` was certainly not delivered: its `keys` are parked again."""
        if not keys:
            return 0
        return int(await self._run(robot, "restore", token, *keys))

    async def block(
        self, robot: Robot, seconds: float, reason: str, entry: Parked | None = None
    ) -> float:
        """Close the robot for `seconds` for everyone (a longer block stays), parking `entry`;
        the seconds until the block in force ends."""
        parked = entry.to_json() if entry is not None else ""
        finish, now = await self._run(robot, "block", int(seconds * 1000), reason[:300], parked)
        return max(0, int(finish) - int(now)) / 1000
