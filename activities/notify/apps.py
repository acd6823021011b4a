"""The app channels' sends (`wecom_app`, `feishu_app`, `dingtalk_app`): a card with
buttons to each recipient. WeCom and Feishu cards are kept in Redis
(`riskflow.names.app_card_key`, `CARD_TTL_SECONDS`) for the callback listener, which redraws
one when its buttons are pressed (a card that could not be kept stays as sent: its buttons
still act, the card is just not redrawn); a DingTalk card is changed by its variables alone,
so nothing of it is kept.

Each app's API client keeps its access token, so there is one per channel and process
(`AppSenders.wecom` / `feishu` / `dingtalk`, also used by the callback listener).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from activities.notify import dingtalk_card
from activities.notify.cards import CARD_TTL_SECONDS
from activities.notify.dingtalk_app import DingTalkApp
from activities.notify.feishu_app import FeishuApp
from activities.notify.feishu_card import card as feishu_card
from activities.notify.feishu_card import content, uuid
from activities.notify.texts import Message
from activities.notify.wecom_app import WeComApp
from activities.notify.wecom_card import message as wecom_app_message
from activities.notify.wecom_card import task_id
from riskflow.config.channels import (
    AppChannelConfig,
    ChannelSecrets,
    DingTalkAppChannel,
    FeishuAppChannel,
    WeComAppChannel,
)
from riskflow.contracts.notifications import NotificationRequest
from riskflow.infra.redis import FAIL_OPEN_SECONDS, RedisClient, store_outage
from riskflow.names import app_card_key

logger = logging.getLogger(__name__)


class AppSenders:
    """The app channels of one process: `session` for their APIs, `secrets` their App
    Secrets, `redis` where their cards are kept."""

    def __init__(
        self, session: aiohttp.ClientSession, secrets: ChannelSecrets, redis: RedisClient
    ) -> None:
        self._session = session
        self._secrets = secrets
        self._redis = redis
        self._wecom: dict[str, WeComApp] = {}
        self._feishu: dict[str, FeishuApp] = {}
        self._dingtalk: dict[str, DingTalkApp] = {}

    def wecom(self, name: str, channel: WeComAppChannel, base: str) -> WeComApp:
        app = self._wecom.get(name)
        if app is None:
            secret = self._secrets.secret(name) or ""
            app = WeComApp(
                self._session,
                base,
                channel.corp_id,
                channel.agent_id,
                secret,
                channel.timeout_seconds,
            )
            self._wecom[name] = app
        return app

    def feishu(self, name: str, channel: FeishuAppChannel, base: str) -> FeishuApp:
        app = self._feishu.get(name)
        if app is None:
            secret = self._secrets.secret(name) or ""
            app = FeishuApp(self._session, base, channel.app_id, secret, channel.timeout_seconds)
            self._feishu[name] = app
        return app

    def dingtalk(self, name: str, channel: DingTalkAppChannel, base: str) -> DingTalkApp:
        app = self._dingtalk.get(name)
        if app is None:
            secret = self._secrets.secret(name) or ""
            app = DingTalkApp(self._session, base, channel.app_key, secret, channel.timeout_seconds)
            self._dingtalk[name] = app
        return app

    async def send(
        self, request: NotificationRequest, message: Message, channel: AppChannelConfig, base: str
    ) -> str:
        """Send `message` through the app channel: the vendor's detail; `Refused` or
        `Uncertain` as `activities.notify.http.post`."""
        if isinstance(channel, WeComAppChannel):
            return await self._send_wecom(request, message, channel, base)
        if isinstance(channel, FeishuAppChannel):
            return await self._send_feishu(request, message, channel, base)
        return await self._send_dingtalk(request, message, channel, base)

    async def _send_wecom(
        self, request: NotificationRequest, message: Message, channel: WeComAppChannel, base: str
    ) -> str:
        body = wecom_app_message(
            channel,
            message,
            request.incident_id,
            request.language,
            request.idempotency_key,
            request.console_url,
        )
        detail = await self.wecom(request.channel, channel, base).send(body)
        card = body.get("template_card")
        if card is not None:
            await self.keep(request.channel, task_id(request.idempotency_key), card)
        return detail

    async def _send_feishu(
        self, request: NotificationRequest, message: Message, channel: FeishuAppChannel, base: str
    ) -> str:
        """One message per recipient (Feishu takes one a call), each kept under its message
        id; a retry resends them all, and Feishu drops those whose `uuid` it has."""
        app = self.feishu(request.channel, channel, base)
        card = feishu_card(
            message, request.incident_id, request.language, request.severity, request.console_url
        )
        sent = []
        for receive_id in channel.receive_ids:
            key = uuid(request.idempotency_key, receive_id)
            message_id = await app.send(
                channel.receive_id_type, receive_id, "interactive", content(card), key
            )
            sent.append(message_id)
            if not message.closing and message_id != "ok":
                await self.keep(request.channel, message_id, card)
        return "message_id=" + ",".join(sent)

    async def _send_dingtalk(
        self, request: NotificationRequest, message: Message, channel: DingTalkAppChannel, base: str
    ) -> str:
        """One card per space (group or person), each with its own `outTrackId`; a retry
        finds those already delivered existing."""
        app = self.dingtalk(request.channel, channel, base)
        card_params = dingtalk_card.params(
            message, request.incident_id, request.language, request.console_url
        )
        (secret,) = self._secrets.callback(request.channel) or ("",)
        sent = []
        for space in dingtalk_card.spaces(channel):
            key, incident = request.idempotency_key, request.incident_id
            track = dingtalk_card.out_track_id(key, space, incident, secret)
            sent.append(
                await app.deliver(dingtalk_card.delivery(channel, space, track, card_params))
            )
        return "; ".join(sent)

    async def keep(self, channel: str, card_id: str, card: dict[str, Any]) -> None:
        """Keep a card sent (or redrawn) for `CARD_TTL_SECONDS`; Redis away: not kept."""
        key = app_card_key(channel, card_id)
        try:
            async with asyncio.timeout(FAIL_OPEN_SECONDS):
                await self._redis.set(key, json.dumps(card), ex=CARD_TTL_SECONDS)
        except Exception as exc:
            if not store_outage(exc):
                raise
            logger.warning("%s: card %s not kept: %s", channel, key, exc)

    async def kept(self, channel: str, card_id: str) -> dict[str, Any] | None:
        """A card kept by `keep` (None: never kept, or expired)."""
        raw = await self._redis.get(app_card_key(channel, card_id))
        return json.loads(raw) if raw is not None else None
