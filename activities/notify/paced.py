"""The paced path of `NotifyActivities.notify`: a robot channel's message goes only when its
robot has a slot (`activities.notify.pacing`); otherwise it is parked and merged, never dropped.

After the activity has claimed the message's idempotency key (`markers`), `PacedSender.send`:
- sends it as before (`send_once`) when its robot has a slot and nothing is parked for it;
- sends ONE digest (`activities.notify.digest`) of it and every parked message when something
  is parked, then marks each parked message's key `sent` with a "merged" detail, so that
  message's own attempts answer `already_sent` (merged) instead of sending it again;
- parks it when no slot is free (a window full, or the vendor blocked the robot), releases the
  claim and raises a retryable `NOTIFY_PACED` error whose `next_retry_delay` is when the robot
  frees: Temporal's timer waits, no worker sleeps. Whoever gets the robot's next slot, this
  message's retry or another message, sends the digest.
A vendor's own "too fast" answer (the classifier's `NOTIFY_RATE_LIMITED`: DingTalk 130101,
WeCom 45009, Feishu 11232, HTTP 429) closes the robot for every worker for the vendor's block
time (`limits.block_seconds`), logged and recorded in Redis, and parks the refused message.

A digest whose outcome is unknown (a timeout after sending) leaves its messages `unknown`, as a
lost answer does for one message on a robot: not sent again. E-mail is not paced; a webhook
without a `rate_per_minute` has no windows, but its 429 closes it for every worker as a
robot's "too fast" does (a trial saw five other messages reach a webhook inside the 120 s its
429 asked for).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

import aiohttp
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notify.digest import (
    Digest,
    Parked,
    build_digest,
    digest_message,
    incidents_list_url,
    parked_entry,
)
from activities.notify.errors import Refused, Uncertain, application_error
from activities.notify.http import Vendor, post
from activities.notify.limits import VENDOR_LIMITS, block_seconds, paced_windows
from activities.notify.markers import Markers
from activities.notify.pacing import (
    Granted,
    Held,
    InFlight,
    Merged,
    Pacer,
    Robot,
    Taken,
    taken_outcome,
)
from activities.notify.texts import render
from riskflow.config.channels import (
    AppChannelConfig,
    ChannelSecrets,
    EmailChannel,
    HttpChannelConfig,
    NotificationSettings,
    local_receiver_url,
)
from riskflow.contracts.notifications import (
    NOTIFY_CHANNEL_ERROR,
    NOTIFY_IN_FLIGHT,
    NOTIFY_PACED,
    NOTIFY_RATE_LIMITED,
    NotificationRequest,
    NotificationResult,
)
from riskflow.infra.metrics import NOTIFICATIONS

SendOnce = Callable[[], Awaitable[NotificationResult]]


class Robots:
    """Each channel's robot: its URL (configured, else the local receiver's) and windows."""

    def __init__(
        self, config: NotificationSettings, secrets: ChannelSecrets, receiver: str
    ) -> None:
        self._margin = config.pacing_margin
        self._secrets = secrets
        self._receiver = receiver

    def url(self, name: str, channel: HttpChannelConfig) -> str:
        return self._secrets.url(name) or local_receiver_url(channel.type, name, self._receiver)

    def secret(self, name: str) -> str | None:
        return self._secrets.secret(name)

    def robot(self, name: str, channel: HttpChannelConfig | EmailChannel) -> Robot | None:
        """The robot `channel` sends to (None for e-mail). A webhook without a
        `rate_per_minute` has no windows: its sends are never held for a slot, only while its
        own "too fast" answer (429 and its Retry-After) closes it for every worker."""
        if isinstance(channel, EmailChannel | AppChannelConfig):
            return None  # an app's limits are per member and per app, not per robot
        windows = paced_windows(channel.type, channel.rate_per_minute, self._margin)
        return Robot(Robot.id_of(self.url(name, channel)), channel.type, windows)


class PacedSender:
    """See the module docstring. `clock` signs the digests' requests (seconds)."""

    def __init__(
        self,
        pacer: Pacer,
        markers: Markers,
        robots: Robots,
        vendors: Mapping[str, Vendor],
        session: aiohttp.ClientSession,
        clock: Callable[[], float],
    ) -> None:
        self._pacer = pacer
        self._markers = markers
        self._robots = robots
        self._vendors = vendors
        self._session = session
        self._clock = clock

    async def send(
        self,
        request: NotificationRequest,
        channel: HttpChannelConfig | EmailChannel,
        send_once: SendOnce,
    ) -> NotificationResult:
        """Send `request`, whose idempotency key this attempt has claimed (`send_once` sends it
        alone, as an unpaced channel does)."""
        robot = self._robots.robot(request.channel, channel)
        if robot is None or isinstance(channel, EmailChannel):
            return await send_once()
        entry = parked_entry(request, render(request))
        token = f"{request.idempotency_key}#{uuid.uuid4().hex[:12]}"
        decision = await self._pacer.acquire(robot, entry, token)
        if isinstance(decision, Taken):
            return await self._taken(request, channel, decision)
        if isinstance(decision, Held):
            await self._markers.release(request.idempotency_key)
            NOTIFICATIONS.labels(request.channel, "paced").inc()
            raise _held_error(request, decision)
        if decision.parked:
            return await self._digest(robot, request, channel, entry, token, decision)
        return await self._alone(robot, request, entry, send_once)

    async def _alone(
        self, robot: Robot, request: NotificationRequest, entry: Parked, send_once: SendOnce
    ) -> NotificationResult:
        try:
            return await send_once()
        except ApplicationError as exc:
            if exc.type != NOTIFY_RATE_LIMITED:
                raise
            delay = exc.next_retry_delay.total_seconds() if exc.next_retry_delay else None
            wait = await self._close(robot, request.channel, exc.message, delay, entry)
            raise ApplicationError(
                f"{exc.message}; robot closed for {wait:.0f}s for every worker, message parked",
                type=NOTIFY_RATE_LIMITED,
                next_retry_delay=timedelta(seconds=wait),
            ) from None

    async def _close(
        self, robot: Robot, name: str, reason: str, delay: float | None, entry: Parked
    ) -> float:
        """The vendor said "too fast": close the robot for everyone, park `entry`; the wait."""
        wait = await self._pacer.block(robot, block_seconds(robot.vendor, delay), reason, entry)
        NOTIFICATIONS.labels(name, "blocked").inc()
        activity.logger.warning(
            "%s: the vendor refused a send as too fast (%s); the robot is closed for %.0fs "
            "for every worker, its messages parked",
            name,
            reason[:200],
            wait,
        )
        return wait

    async def _taken(
        self, request: NotificationRequest, channel: HttpChannelConfig, taken: Taken
    ) -> NotificationResult:
        key, name = request.idempotency_key, request.channel
        outcome = taken_outcome(taken, self._markers.claim_seconds, channel.timeout_seconds)
        if isinstance(outcome, Merged):
            await self._markers.sent(key, outcome.detail)
            NOTIFICATIONS.labels(name, "already_sent").inc()  # counted `merged` by the digest
            return NotificationResult(channel=name, status="already_sent", detail=outcome.detail)
        if isinstance(outcome, InFlight):
            await self._markers.release(key)
            NOTIFICATIONS.labels(name, "in_flight").inc()
            raise ApplicationError(
                f"channel {name!r}: a digest carrying {key!r} is being sent",
                type=NOTIFY_IN_FLIGHT,
                next_retry_delay=timedelta(seconds=outcome.wait_seconds),
            )
        await self._markers.unknown(key, outcome.detail)
        NOTIFICATIONS.labels(name, "uncertain").inc()
        return NotificationResult(
            channel=name, status="already_sent", detail=outcome.detail, uncertain=True
        )

    async def _digest(
        self,
        robot: Robot,
        request: NotificationRequest,
        channel: HttpChannelConfig,
        entry: Parked,
        token: str,
        granted: Granted,
    ) -> NotificationResult:
        key, name = request.idempotency_key, request.channel
        entries = [entry, *granted.parked]
        others = [p.key for p in granted.parked]
        list_url = next((incidents_list_url(e.link) for e in entries if e.link), "")
        digest = build_digest(
            entries,
            request.language,
            VENDOR_LIMITS[robot.vendor].digest_bytes,
            list_url,
            neutral=self._vendors[channel.type].neutral,
        )
        try:
            answer = await self._post(request, channel, digest)
        except Refused as exc:
            await self._markers.release(key)
            raise await self._refused(robot, name, exc, entry, token, others) from None
        except Uncertain as exc:
            detail = f"{exc}; in a digest of {len(entries)} messages"
            await self._pacer.settle(robot, token, others, "unknown", detail)
            await asyncio.gather(*(self._markers.unknown(k, detail) for k in [key, *others]))
            NOTIFICATIONS.labels(name, "failed").inc()
            raise ApplicationError(
                f"channel {name!r}: {exc}; the outcome of a digest is unknown",
                type=NOTIFY_CHANNEL_ERROR,
            ) from None
        return await self._delivered(robot, request, token, digest, answer)

    async def _refused(
        self,
        robot: Robot,
        name: str,
        exc: Refused,
        entry: Parked,
        token: str,
        others: list[str],
    ) -> ApplicationError:
        """The digest was certainly not delivered: its messages are parked again, after the
        robot is closed when the vendor said "too fast" (so no other worker takes them back
        to a robot that refuses)."""
        if exc.kind != NOTIFY_RATE_LIMITED:
            await self._pacer.restore(robot, token, others)
            NOTIFICATIONS.labels(name, "failed" if exc.retryable else "rejected").inc()
            return application_error(name, exc)
        wait = await self._close(robot, name, str(exc), exc.retry_after_seconds, entry)
        await self._pacer.restore(robot, token, others)
        return ApplicationError(
            f"channel {name!r}: {exc}; robot closed for {wait:.0f}s, the digest's messages parked",
            type=NOTIFY_RATE_LIMITED,
            next_retry_delay=timedelta(seconds=wait),
        )

    async def _delivered(
        self,
        robot: Robot,
        request: NotificationRequest,
        token: str,
        digest: Digest,
        answer: str,
    ) -> NotificationResult:
        """Record a delivered digest: every key in it `sent`, the others' as merged."""
        key, name = request.idempotency_key, request.channel
        size = len(digest.keys)
        listed = f"merged: sent in a digest of {size} messages with {key!r} ({answer})"
        counted = f"merged: counted in a digest of {size} messages with {key!r} ({answer})"
        details = {k: listed for k in digest.listed} | {k: counted for k in digest.counted}
        others = [k for k in digest.keys if k != key]
        for state_keys, detail in ((digest.listed, listed), (digest.counted, counted)):
            chosen = [k for k in state_keys if k != key]
            await self._pacer.settle(robot, token, chosen, "sent", detail)
        await asyncio.gather(*(self._markers.sent(k, details[k]) for k in others))
        own = f"digest of {size} messages: {answer}"
        await self._markers.sent(key, own)
        NOTIFICATIONS.labels(name, "sent").inc()
        NOTIFICATIONS.labels(name, "merged").inc(len(others))
        activity.logger.info("%s: sent %s as a digest of %d messages", name, key, size)
        return NotificationResult(channel=name, status="sent", detail=own)

    async def _post(
        self, request: NotificationRequest, channel: HttpChannelConfig, digest: Digest
    ) -> str:
        """POST `digest` to the robot in the vendor's format (`digest_message`)."""
        name = request.channel
        carried, message = digest_message(request, digest)
        vendor = self._vendors[channel.type]
        url = self._robots.url(name, channel)
        built = vendor.build(carried, message, url, self._robots.secret(name), self._clock())
        return await post(self._session, vendor, built, channel.timeout_seconds)


def _held_error(request: NotificationRequest, held: Held) -> ApplicationError:
    why = "the vendor blocked the robot" if held.blocked else "the robot's window is full"
    return ApplicationError(
        f"channel {request.channel!r}: {why}; parked with {held.parked} message(s), sent "
        f"merged when the robot frees in {held.wait_seconds:.1f}s",
        type=NOTIFY_PACED,
        next_retry_delay=timedelta(seconds=held.wait_seconds),
    )
