"""Notification channels: one module per vendor, and `NotifyActivities.notify`, the activity
the incident workflow calls with a `riskflow.contracts.notifications.NotificationRequest`.

One idempotency key is at most one message (`activities.notify.markers` explains the claim,
the crash between sending and recording, and why the generic webhook alone sends again when an
outcome is unknown). Everything that can fail before the network (rendering, the e-mail, the
signed request) is done before the claim is taken, so a claim only ever covers a send. What a
failed send means, not sent or maybe sent, is decided by the phase it reached
(`activities.notify.errors`). Retries are Temporal's: a failure is an `ApplicationError` whose
`type` is one of riskflow.contracts.notifications' NOTIFY_* kinds, non-retryable for bad
configuration or format.

Robot channels are paced per robot for every worker (`activities.notify.paced`): a message
that cannot go now is parked, merged into the robot's next message, and its activity retried
when the robot frees. While Redis (markers and pacing) is unreachable a message is sent
without either (`unguarded`): an alarm never waits for Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial

import aiohttp
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notify.apps import AppSenders
from activities.notify.dingtalk import DINGTALK
from activities.notify.dingtalk_app import DINGTALK_APP
from activities.notify.errors import Refused, Uncertain, application_error
from activities.notify.feishu import FEISHU
from activities.notify.feishu_app import FEISHU_APP
from activities.notify.http import Vendor, post, reuses_connections
from activities.notify.mail import MailSender, compose
from activities.notify.markers import Markers, Prior
from activities.notify.paced import PacedSender, Robots
from activities.notify.pacing import Pacer
from activities.notify.texts import render
from activities.notify.webhook import WEBHOOK
from activities.notify.wecom import WECOM
from activities.notify.wecom_app import WECOM_APP
from riskflow.config.channels import (
    APP_CHANNEL_TYPES,
    ChannelSecrets,
    EmailChannel,
    HttpChannelConfig,
    NotificationSettings,
    local_receiver_url,
)
from riskflow.contracts.notifications import (
    NOTIFY_CHANNEL_ERROR,
    NOTIFY_IN_FLIGHT,
    NOTIFY_RATE_LIMITED,
    NOTIFY_REJECTED,
    NOTIFY_UNKNOWN_CHANNEL,
    NotificationRequest,
    NotificationResult,
)
from riskflow.infra.metrics import NOTIFICATIONS
from riskflow.infra.redis import FAIL_OPEN_SECONDS, RedisClient, store_outage

logger = logging.getLogger(__name__)
VENDORS: dict[str, Vendor] = {
    v.name: v for v in (WEBHOOK, DINGTALK, WECOM, WECOM_APP, FEISHU, FEISHU_APP, DINGTALK_APP)
}
_OUTCOMES = {
    NOTIFY_RATE_LIMITED: "rate_limited",
    NOTIFY_CHANNEL_ERROR: "failed",
    NOTIFY_REJECTED: "rejected",
}


class NotifyActivities:
    """Sends incident notifications through the configured channels.

    `session` posts to the HTTP channels (`http.fresh_connection_session`: it never reuses a
    connection, so a lost connection is never a stale pooled one), `mailer` sends e-mail,
    `redis` keeps the idempotency markers, `config` names the channels, `secrets` holds their
    URLs and secrets (resolved in this process), `receiver` is the local receiver's base URL for
    channels without a URL, `pacing_clock` the robots' pacing clock (None: Redis' own)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        mailer: MailSender,
        redis: RedisClient,
        config: NotificationSettings,
        secrets: ChannelSecrets,
        receiver: str = "",
        clock: Callable[[], float] = time.time,
        pacing_clock: Callable[[], float] | None = None,
    ) -> None:
        if reuses_connections(session):
            logger.warning(
                "the notification session pools connections: a disconnect on a stale one will "
                "read as 'maybe sent' (build it with fresh_connection_session)"
            )
        self._session = session
        self._redis = redis
        self.apps = AppSenders(session, secrets, redis)
        self._mailer = mailer
        self._markers = Markers(redis, config.claim_seconds, config.marker_ttl_seconds)
        self._config = config
        self._secrets = secrets
        self._receiver = receiver
        self._clock = clock
        pacer = Pacer(redis, config.marker_ttl_seconds, clock=pacing_clock)
        robots = Robots(config, secrets, receiver)
        self._pacing = PacedSender(pacer, self._markers, robots, VENDORS, session, clock)

    @activity.defn(name="notify")
    async def notify(self, request: NotificationRequest) -> NotificationResult:
        """Send `request` once per idempotency key; see the module docstring for errors."""
        name = request.channel
        channel = self._config.channels.get(name)
        if channel is None:
            NOTIFICATIONS.labels("unknown", "unknown_channel").inc()
            raise ApplicationError(
                f"no notification channel named {name!r} is configured "
                f"(riskflow.yaml: notifications.channels)",
                type=NOTIFY_UNKNOWN_CHANNEL,
                non_retryable=True,
            )
        redeliverable = (
            not isinstance(channel, EmailChannel) and VENDORS[channel.type].redeliverable
        )
        send = self._prepare(request, channel)
        try:
            async with asyncio.timeout(FAIL_OPEN_SECONDS):
                prior = await self._markers.claim(request.idempotency_key)
        except Exception as exc:
            if not store_outage(exc):
                raise
            return await self._unguarded(request, send, exc)
        if prior is not None:
            early = await self._after(request, prior, redeliverable)
            if early is not None:
                NOTIFICATIONS.labels(name, "uncertain" if early.uncertain else early.status).inc()
                return early
        return await self._pacing.send(request, channel, partial(self._send_once, request, send))

    async def _after(
        self, request: NotificationRequest, prior: Prior, redeliverable: bool
    ) -> NotificationResult | None:
        """What an earlier attempt left decides: a result now, or None to send (again)."""
        key, name = request.idempotency_key, request.channel
        if prior.state == "sent":
            return NotificationResult(channel=name, status="already_sent", detail=prior.detail)
        if prior.state == "sending" and prior.age_seconds < self._markers.claim_seconds:
            NOTIFICATIONS.labels(name, "in_flight").inc()
            wait = max(1.0, self._markers.claim_seconds - prior.age_seconds)
            raise ApplicationError(
                f"another attempt of {key!r} is sending (claimed {prior.age_seconds:.0f}s ago)",
                type=NOTIFY_IN_FLIGHT,
                next_retry_delay=timedelta(seconds=wait),
            )
        # `unknown`, or a `sending` claim whose attempt died without recording an outcome.
        if redeliverable:
            activity.logger.info("%s: outcome of %s unknown, sending again", name, key)
            await self._markers.retake(key)
            return None
        detail = prior.detail or "an earlier attempt died while sending"
        await self._markers.unknown(key, detail)
        activity.logger.warning("%s: outcome of %s unknown, not sent again: %s", name, key, detail)
        return NotificationResult(
            channel=name, status="already_sent", detail=detail, uncertain=True
        )

    async def _unguarded(
        self,
        request: NotificationRequest,
        send: Callable[[], Awaitable[str]],
        error: Exception,
    ) -> NotificationResult:
        """Redis, which keeps the idempotency markers and the robots' pacing, is unreachable:
        an alarm must not wait for it. Sent without a marker or a slot: a retry after an
        uncertain outcome may send it again, and a robot may be sent more than its vendor's
        rate while Redis is away (a duplicate or a throttled robot, rather than no alarm)."""
        name, key = request.channel, request.idempotency_key
        activity.logger.warning(
            "%s: Redis unreachable (%s): %s sent without its idempotency marker or pacing",
            name,
            error,
            key,
        )
        try:
            detail = await send()
        except Refused as exc:
            NOTIFICATIONS.labels(name, _OUTCOMES.get(exc.kind, "failed")).inc()
            raise application_error(name, exc) from None
        except Uncertain as exc:
            NOTIFICATIONS.labels(name, "failed").inc()
            raise ApplicationError(
                f"channel {name!r}: {exc}; the outcome is unknown (Redis unreachable: "
                "a retry sends it again)",
                type=NOTIFY_CHANNEL_ERROR,
            ) from None
        NOTIFICATIONS.labels(name, "unguarded").inc()
        return NotificationResult(
            channel=name, status="sent", detail=f"{detail} (Redis unreachable: no marker)"
        )

    async def _send_once(
        self, request: NotificationRequest, send: Callable[[], Awaitable[str]]
    ) -> NotificationResult:
        key, name = request.idempotency_key, request.channel
        try:
            detail = await send()
        except Refused as exc:
            await self._markers.release(key)
            NOTIFICATIONS.labels(name, _OUTCOMES.get(exc.kind, "failed")).inc()
            raise application_error(name, exc) from None
        except Uncertain as exc:
            await self._markers.unknown(key, str(exc))
            NOTIFICATIONS.labels(name, "failed").inc()
            raise ApplicationError(
                f"channel {name!r}: {exc}; the outcome is unknown", type=NOTIFY_CHANNEL_ERROR
            ) from None
        await self._markers.sent(key, detail)
        NOTIFICATIONS.labels(name, "sent").inc()
        activity.logger.info("%s: sent %s (%s)", name, key, request.kind)
        return NotificationResult(channel=name, status="sent", detail=detail)

    def _prepare(
        self, request: NotificationRequest, channel: HttpChannelConfig | EmailChannel
    ) -> Callable[[], Awaitable[str]]:
        """The send, ready to go: the message rendered and composed or signed (no network)."""
        name = request.channel
        message = render(request)
        if isinstance(channel, EmailChannel):
            mail = compose(request, message, channel)
            return partial(self._mailer.send, channel, self._secrets.password(name), mail)
        url = self._secrets.url(name) or local_receiver_url(channel.type, name, self._receiver)
        if isinstance(channel, APP_CHANNEL_TYPES):
            return partial(self.apps.send, request, message, channel, url)
        vendor = VENDORS[channel.type]
        http_request = vendor.build(
            request, message, url, self._secrets.secret(name), self._clock()
        )
        return partial(post, self._session, vendor, http_request, channel.timeout_seconds)
