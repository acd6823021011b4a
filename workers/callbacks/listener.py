"""`riskflow callbacks run`: the callback listener as a program. Builds each app channel's
receiver (its callback crypto and API client) from the notification settings and the
environment, connects to Temporal and Redis, and serves `workers.callbacks.app` on
`callbacks.host:callbacks.port` until SIGINT/SIGTERM (or `stop`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from temporalio.client import Client

from activities.notify.http import fresh_connection_session
from activities.notify.wecom_app import WeComApp
from riskflow.config.channels import ChannelSecrets, WeComAppChannel, local_receiver_url
from riskflow.config.settings import Settings
from riskflow.errors import ConfigError
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import redis_client
from riskflow.infra.shutdown import stop_on_signals
from workers.callbacks.app import build_app
from workers.callbacks.clicks import CardActions
from workers.callbacks.wecom import WeComCards, WeComReceiver
from workers.callbacks.wecom_crypto import WeComCrypto

logger = logging.getLogger(__name__)


def receivers(
    settings: Settings,
    secrets: ChannelSecrets,
    session: aiohttp.ClientSession,
    receiver_url: str,
) -> dict[str, WeComReceiver]:
    """Every app channel's receiver; ConfigError for a callback key that is not one."""
    found: dict[str, WeComReceiver] = {}
    for name, channel in settings.notifications.channels.items():
        if not isinstance(channel, WeComAppChannel):
            continue
        token, key = secrets.callback(name) or ("", "")
        try:
            crypto = WeComCrypto(token, key, channel.corp_id)
        except ValueError as exc:
            raise ConfigError(f"notifications.channels.{name}: callback_aes_key: {exc}") from None
        base = secrets.url(name) or local_receiver_url(channel.type, name, receiver_url)
        secret = secrets.secret(name) or ""
        api = WeComApp(
            session, base, channel.corp_id, channel.agent_id, secret, channel.timeout_seconds
        )
        found[name] = WeComReceiver(name, channel, crypto, api)
    return found


@asynccontextmanager
async def listening(
    settings: Settings, client: Client, endpoints: Endpoints, port: int | None = None
) -> AsyncIterator[tuple[web.AppRunner, Mapping[str, WeComReceiver]]]:
    """The listener serving on `callbacks.host` and `port` (default `callbacks.port`; 0:
    any free one, read from the runner's addresses), closed on the way out."""
    secrets = ChannelSecrets.from_environment(settings.notifications)
    redis = redis_client(endpoints.redis, timeout_seconds=5)
    session = fresh_connection_session(secrets.all_configured(settings.notifications))
    runner: web.AppRunner | None = None
    try:
        found = receivers(settings, secrets, session, endpoints.receiver)
        sites = {site.id: site for site in settings.sites}
        actions = CardActions(
            client, redis, settings.people, sites.get, WeComCards(found, redis), settings.callbacks
        )
        runner = web.AppRunner(build_app(found, actions, settings.callbacks))
        await runner.setup()
        chosen = settings.callbacks.port if port is None else port
        await web.TCPSite(runner, settings.callbacks.host, chosen).start()
        yield runner, found
    finally:
        if runner is not None:
            await runner.cleanup()
        await session.close()
        await redis.aclose()


async def run_callbacks(
    settings: Settings, client: Client, stop: asyncio.Event | None = None
) -> None:
    endpoints = Endpoints.of(settings)
    stop = stop or stop_on_signals()
    async with listening(settings, client, endpoints) as (_, found):
        if not found:
            logger.warning("no app channel is configured (type wecom_app): nothing to receive")
        cfg = settings.callbacks
        logger.info("callbacks on %s:%s for %s", cfg.host, cfg.port, ", ".join(found) or "-")
        await stop.wait()
    logger.info("callback listener stopped")
