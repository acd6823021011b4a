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

from activities.notify import dingtalk_card, errors
from activities.notify.cards import CARD_TTL_SECONDS, OPEN_ACTIONS, plain
from activities.notify.dingtalk_app import ContentUnsafe, DingTalkApp
from activities.notify.errors import RecipientRefused, Refused, Uncertain
from activities.notify.feishu_app import FeishuApp
from activities.notify.feishu_card import card as feishu_card
from activities.notify.feishu_card import content, redrawn, uuid
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
from riskflow.infra.redis import FAIL_OPEN_SECONDS, RedisClient, as_text, store_outage
from riskflow.names import (
    app_card_key,
    card_field,
    card_of_field,
    card_told_key,
    incident_cards_key,
)

logger = logging.getLogger(__name__)
SEND_CONCURRENCY = 5  # Feishu: 50 calls a second per app, 5 a second per chat or person
OPEN, CLOSED = 0, 2  # a card's rank (`incident_cards_key`; workers.callbacks.cards)
# Messages that change the incident's earlier cards: the rank they are redrawn to.
REDRAWN_BY = {"still_present": OPEN, "resolved": CLOSED, "dismissed": CLOSED}


def _delivered(
    vendor: str, channel: str, recipients: list[str], results: list[str | BaseException]
) -> str:
    """The detail of a send to several recipients; raises what failed it (see
    `AppSenders._send_feishu`)."""
    refused = {
        r: e for r, e in zip(recipients, results, strict=True) if isinstance(e, RecipientRefused)
    }
    failures = [e for e in results if isinstance(e, BaseException) and e not in refused.values()]
    if failures:
        raise failures[0]
    taken = [m for m in results if isinstance(m, str)]
    if not taken:
        raise errors.rejected(f"{vendor}: no recipient could be reached: {list(refused.values())}")
    if refused:
        logger.warning(
            "%s: not delivered to %s", channel, "; ".join(f"{r} ({e})" for r, e in refused.items())
        )
    out = f"; not delivered to {', '.join(refused)}" if refused else ""
    return "message_id=" + ",".join(taken) + out


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
            detail = await self._send_feishu(request, message, channel, base)
        else:
            detail = await self._send_dingtalk(request, message, channel, base)
        rank = REDRAWN_BY.get(request.kind)
        if rank is not None:
            try:
                await self._redraw_cards(request, message, channel, base, rank)
            except Exception as exc:  # the message went: cards not redrawn are no failure
                if not store_outage(exc):
                    raise
                logger.warning("%s: earlier cards not redrawn: %s", request.channel, exc)
        return detail

    async def _redraw_cards(
        self,
        request: NotificationRequest,
        message: Message,
        channel: FeishuAppChannel | DingTalkAppChannel,
        base: str,
        rank: int,
    ) -> None:
        """The incident changed without a click: open again (an acknowledgement's ETA ran out
        with the hazard still there: every button back; a card's rank goes down only here),
        or closed (from the console or the CLI: no buttons left). The channel's earlier cards
        of it say so, with the message's title as their line. A card that cannot be redrawn
        is logged, not a failed send."""
        key = incident_cards_key(request.incident_id)
        line, vendor = (
            message.title(plain),
            "feishu" if isinstance(channel, FeishuAppChannel) else "dingtalk",
        )
        for raw, shown in (await self._redis.hgetall(key)).items():
            field = as_text(raw)
            found, name, card_id = card_of_field(field)
            if (found, name) != (vendor, request.channel) or int(shown) == rank:
                continue
            try:
                if isinstance(channel, FeishuAppChannel):
                    await self._redraw_feishu(request, channel, base, card_id, line, rank)
                else:
                    await self._redraw_dingtalk(request, channel, base, card_id, line, rank)
            except (Refused, Uncertain) as exc:
                logger.warning("%s: card %s not redrawn: %s", request.channel, card_id, exc)
                continue
            await self._redis.hset(key, field, str(rank))

    async def _redraw_feishu(
        self,
        request: NotificationRequest,
        channel: FeishuAppChannel,
        base: str,
        card_id: str,
        line: str,
        rank: int,
    ) -> None:
        sent = await self.kept(request.channel, card_id)
        if sent is None:
            return
        actions = OPEN_ACTIONS if rank == OPEN else ()
        card = redrawn(sent, line, request.incident_id, request.language, actions)
        await self.feishu(request.channel, channel, base).update(card_id, content(card))
        await self.keep(request.channel, card_id, card)

    async def _redraw_dingtalk(
        self,
        request: NotificationRequest,
        channel: DingTalkAppChannel,
        base: str,
        card_id: str,
        line: str,
        rank: int,
    ) -> None:
        app = self.dingtalk(request.channel, channel, base)
        state = "open" if rank == OPEN else "closed"
        public = {"status": dingtalk_card.status(line), "state": state}
        await app.update(dingtalk_card.update(card_id, public))
        for raw in await self._redis.smembers(card_told_key(request.channel, card_id)):
            user = as_text(raw)
            await app.update(dingtalk_card.update(card_id, private={user: public}))

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
        """One message per recipient (Feishu takes one a call), `SEND_CONCURRENCY` at a time,
        each kept under its message id and listed for its incident. Every recipient is tried:
        one out of reach (`RecipientRefused`) is named in the detail, not a failure of the
        others; any other failure fails the attempt once all were tried, and the retry sends
        again to all (Feishu drops those whose `uuid` it has)."""
        app = self.feishu(request.channel, channel, base)
        card = feishu_card(
            message, request.incident_id, request.language, request.severity, request.console_url
        )
        body, limit = content(card), asyncio.Semaphore(SEND_CONCURRENCY)

        async def one(receive_id: str) -> str:
            async with limit:
                key = uuid(request.idempotency_key, receive_id)
                return await app.send(channel.receive_id_type, receive_id, "interactive", body, key)

        ids = channel.receive_ids
        results = await asyncio.gather(*(one(r) for r in ids), return_exceptions=True)
        sent = {r: m for r, m in zip(ids, results, strict=True) if isinstance(m, str)}
        for message_id in sent.values():
            if not message.closing and message_id != "ok":
                await self.keep(request.channel, message_id, card)
                await self.index(request.incident_id, "feishu", request.channel, message_id)
        return _delivered("feishu", request.channel, ids, results)

    async def _send_dingtalk(
        self, request: NotificationRequest, message: Message, channel: DingTalkAppChannel, base: str
    ) -> str:
        """One card delivered to every space of the channel (groups and robot chats), so one
        update redraws every copy; its `outTrackId` is the same for every attempt (a retry
        finds it existing)."""
        app = self.dingtalk(request.channel, channel, base)
        card_params = dingtalk_card.params(
            message, request.incident_id, request.language, request.console_url
        )
        name = request.channel
        secret = dingtalk_card.seal_key(self._secrets.callback(name), self._secrets.secret(name))
        key, incident = request.idempotency_key, request.incident_id
        track = dingtalk_card.out_track_id(key, incident, secret)
        try:
            detail = await app.deliver(dingtalk_card.delivery(channel, track, card_params))
        except ContentUnsafe as exc:  # the review refused the words: the alarm goes anyway
            logger.warning(
                "%s: %s; sending the card without the model's words", request.channel, exc
            )
            plainer = dingtalk_card.plainer(card_params, request.language)
            track = dingtalk_card.out_track_id(key + "#plain", incident, secret)
            detail = await app.deliver(dingtalk_card.delivery(channel, track, plainer))
        if not message.closing:
            await self.index(request.incident_id, "dingtalk", request.channel, track)
        return detail

    async def index(self, incident_id: str, vendor: str, channel: str, card_id: str) -> None:
        """List a card under its incident (`incident_cards_key`), shown open (rank 0)."""
        key = incident_cards_key(incident_id)
        try:
            async with asyncio.timeout(FAIL_OPEN_SECONDS):
                await self._redis.hsetnx(key, card_field(vendor, channel, card_id), "0")
                await self._redis.expire(key, CARD_TTL_SECONDS)
        except Exception as exc:
            if not store_outage(exc):
                raise
            logger.warning(
                "%s: card %s not listed under %s: %s", channel, card_id, incident_id, exc
            )

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
