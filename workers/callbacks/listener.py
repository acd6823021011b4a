"""`riskflow callbacks run`: the callback listener as a program. Builds each app channel's
receiver (its callback crypto and API client) from the notification settings and the
environment, connects to Redis, serves `workers.callbacks.app` on
`callbacks.host:callbacks.port` and runs the worker of its clicks (`CardClickWorkflow` and
`ClickActivities` on `CARD_CLICK_QUEUE`) until SIGINT/SIGTERM (or `stop`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import aiohttp
from aiohttp import web
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.notify import dingtalk_card
from activities.notify.apps import AppSenders
from activities.notify.http import fresh_connection_session
from riskflow.config.channels import (
    APP_CHANNEL_TYPES,
    ChannelSecrets,
    FeishuAppChannel,
    WeComAppChannel,
    local_receiver_url,
)
from riskflow.config.settings import Settings
from riskflow.errors import ConfigError
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import redis_client
from riskflow.infra.shutdown import stop_on_signals
from riskflow.names import CARD_CLICK_QUEUE
from workers.callbacks.app import Receivers, build_app, take
from workers.callbacks.cards import AppCards
from workers.callbacks.clicks import ClickActivities
from workers.callbacks.dingtalk import DingTalkCards, DingTalkReceiver
from workers.callbacks.dingtalk_stream import StreamConnection
from workers.callbacks.feishu import FeishuCards, FeishuReceiver
from workers.callbacks.feishu_crypto import FeishuCrypto
from workers.callbacks.wecom import WeComCards, WeComReceiver
from workers.callbacks.wecom_crypto import WeComCrypto
from workflows.card_click import CardClickWorkflow

logger = logging.getLogger(__name__)


def receivers(
    settings: Settings, secrets: ChannelSecrets, apps: AppSenders, receiver_url: str
) -> Receivers:
    """Every app channel's receiver; ConfigError for a callback key that is not one."""
    wecom: dict[str, WeComReceiver] = {}
    feishu: dict[str, FeishuReceiver] = {}
    dingtalk: dict[str, DingTalkReceiver] = {}
    for name, channel in settings.notifications.channels.items():
        if not isinstance(channel, APP_CHANNEL_TYPES):
            continue
        base = secrets.url(name) or local_receiver_url(channel.type, name, receiver_url)
        callback = secrets.callback(name) or ()
        try:
            if isinstance(channel, WeComAppChannel):
                token, key = callback
                crypto = WeComCrypto(token, key, channel.corp_id)
                api = apps.wecom(name, channel, base)
                wecom[name] = WeComReceiver(name, channel, crypto, api)
            elif isinstance(channel, FeishuAppChannel):
                token, key = callback
                feishu_api = apps.feishu(name, channel, base)
                feishu[name] = FeishuReceiver(name, channel, FeishuCrypto(key, token), feishu_api)
            else:
                seal = dingtalk_card.seal_key(callback, secrets.secret(name))
                dingtalk_api = apps.dingtalk(name, channel, base)
                dingtalk[name] = DingTalkReceiver(name, channel, seal, dingtalk_api)
        except ValueError as exc:
            raise ConfigError(f"notifications.channels.{name}: callback: {exc}") from None
    return Receivers(wecom=wecom, feishu=feishu, dingtalk=dingtalk)


def streams(
    settings: Settings,
    secrets: ChannelSecrets,
    found: Receivers,
    session: aiohttp.ClientSession,
    endpoints: Endpoints,
    app: web.Application,
) -> list[StreamConnection]:
    """A Stream connection for each DingTalk app channel in Stream mode, its clicks kept as
    the listener keeps a request's (`workers.callbacks.app.take`)."""
    made = []
    for name, receiver in found.dingtalk.items():
        channel = receiver.channel
        if channel.callback_mode != "stream":
            continue
        base = secrets.url(name) or local_receiver_url(channel.type, name, endpoints.receiver)
        keep = partial(take, app)
        made.append(StreamConnection(receiver, session, base, secrets.secret(name) or "", keep))
    return made


def click_worker(
    client: Client, activities: ClickActivities, task_queue: str = CARD_CLICK_QUEUE
) -> Worker:
    """The worker of the clicks: their workflow and its two activities."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CardClickWorkflow],
        activities=[activities.act, activities.tell],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                "opentelemetry",
                "workflows",  # as the main worker's (tracing interceptor)
            )
        ),
    )


@asynccontextmanager
async def listening(
    settings: Settings,
    client: Client,
    endpoints: Endpoints,
    port: int | None = None,
    click_queue: str = CARD_CLICK_QUEUE,
) -> AsyncIterator[tuple[web.AppRunner, Receivers]]:
    """The listener serving on `callbacks.host` and `port` (default `callbacks.port`; 0:
    any free one, read from the runner's addresses) and its clicks' worker on `click_queue`,
    closed on the way out."""
    secrets = ChannelSecrets.from_environment(settings.notifications)
    redis = redis_client(endpoints.redis, timeout_seconds=5)
    session = fresh_connection_session(secrets.all_configured(settings.notifications))
    stream_session = aiohttp.ClientSession(trust_env=secrets.all_configured(settings.notifications))
    runner: web.AppRunner | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        apps = AppSenders(session, secrets, redis)
        found = receivers(settings, secrets, apps, endpoints.receiver)
        sites = {site.id: site for site in settings.sites}
        cards = AppCards(
            WeComCards(found.wecom, redis),
            FeishuCards(found.feishu, apps),
            DingTalkCards(found.dingtalk, redis),
            redis,
        )
        activities = ClickActivities(client, redis, settings.people, sites.get, cards)
        async with click_worker(client, activities, click_queue):
            app = build_app(found, client, redis, settings.callbacks, click_queue=click_queue)
            runner = web.AppRunner(app, access_log=None)  # refusals log themselves, paced
            await runner.setup()
            chosen = settings.callbacks.port if port is None else port
            await web.TCPSite(runner, settings.callbacks.host, chosen).start()
            for stream in streams(settings, secrets, found, stream_session, endpoints, app):
                found.streams.append(stream)
                tasks.append(asyncio.create_task(stream.run()))
            yield runner, found
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()
        await session.close()
        await stream_session.close()
        await redis.aclose()


async def run_callbacks(
    settings: Settings, client: Client, stop: asyncio.Event | None = None
) -> None:
    endpoints = Endpoints.of(settings)
    stop = stop or stop_on_signals()
    async with listening(settings, client, endpoints) as (_, found):
        names = found.names()
        if not names:
            logger.warning("no app channel is configured (wecom_app, feishu_app, dingtalk_app)")
        cfg = settings.callbacks
        logger.info("callbacks on %s:%s for %s", cfg.host, cfg.port, ", ".join(names) or "-")
        await stop.wait()
    logger.info("callback listener stopped")
