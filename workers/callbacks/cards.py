"""How a click's outcome reaches the cards (`workers.callbacks.clicks.Cards`), whichever
chat app it came from.

- Told to the presser alone (a refusal, the question of a false alarm's reason): on the
  vendor's way for one person (WeCom: their card; Feishu: a message from the bot; DingTalk:
  their own card data).
- The incident changed: every card of the incident the listener can redraw is redrawn, in
  every app channel and vendor (`riskflow.names.incident_cards_key`, listed at send time):
  a claim pressed on WeCom shows on the Feishu group's card and the DingTalk robot chats too.
  WeCom cards can only be changed with a click's single-use response code, so only the
  pressed WeCom card is. Each card's rank (0 open, 1 acknowledged, 2 closed) only rises: an
  update delayed by a retry never draws "claimed" over a card that already shows the close.
  A card whose update is refused for good (too old, recalled) is logged and skipped; a busy
  vendor fails the activity once all were tried, and its retry redraws them again.
"""

from __future__ import annotations

import logging

from activities.notify.errors import Refused, Uncertain
from riskflow.contracts.card_actions import CardClick, ClickOutcome
from riskflow.infra.redis import RedisClient, as_text
from riskflow.names import card_field, card_of_field, incident_cards_key
from workers.callbacks.dingtalk import DingTalkCards
from workers.callbacks.feishu import FeishuCards
from workers.callbacks.wecom import WeComCards

logger = logging.getLogger(__name__)
RANKS = {"open": 0, "acknowledged": 1, "closed": 2}


def _own_card(click: CardClick) -> str | None:
    """The field of the pressed card in `incident_cards_key` (None: WeCom's, told apart)."""
    if click.vendor == "feishu" and click.card_ref.get("message_id"):
        return card_field("feishu", click.channel, click.card_ref["message_id"])
    if click.vendor == "dingtalk" and click.card_ref.get("out_track_id"):
        return card_field("dingtalk", click.channel, click.card_ref["out_track_id"])
    return None


class AppCards:
    """See the module docstring."""

    def __init__(
        self, wecom: WeComCards, feishu: FeishuCards, dingtalk: DingTalkCards, redis: RedisClient
    ) -> None:
        self._wecom = wecom
        self._feishu = feishu
        self._dingtalk = dingtalk
        self._redis = redis

    async def tell(self, click: CardClick, outcome: ClickOutcome) -> None:
        """The redraws first (a busy vendor fails them all to be tried again), then the
        pressed WeCom card (its response code is single-use: told once, last)."""
        if outcome.everyone and outcome.incident_id and outcome.line:
            await self._redraw(click, outcome)
        if click.vendor == "wecom":
            await self._wecom.tell(click, outcome)  # the pressed card, presser or everyone
        elif not outcome.everyone and click.vendor == "feishu":
            await self._feishu.tell_presser(click, outcome)
        elif not outcome.everyone and click.vendor == "dingtalk":
            await self._dingtalk.tell_presser(click, outcome)

    async def _redraw(self, click: CardClick, outcome: ClickOutcome) -> None:
        rank = RANKS["closed" if outcome.closed else "acknowledged"]
        key = incident_cards_key(outcome.incident_id)
        hashed = await self._redis.hgetall(key)
        listed = {as_text(f): int(as_text(r)) for f, r in hashed.items()}
        own = _own_card(click)
        if own is not None:
            listed.setdefault(own, RANKS["open"])
        busy: list[Exception] = []
        for field, shown in listed.items():
            if shown > rank:
                continue  # the card already shows a later state
            try:
                await self._redraw_one(field, outcome, click if field == own else None)
            except Refused as exc:
                if exc.retryable:
                    busy.append(exc)
                else:
                    logger.warning("card %s not redrawn: %s", field, exc)
                continue
            except Uncertain as exc:
                busy.append(exc)
                continue
            await self._redis.hset(key, field, str(rank))
        if busy:
            raise busy[0]

    async def _redraw_one(self, field: str, outcome: ClickOutcome, click: CardClick | None) -> None:
        """One card redrawn; `click` when it is the pressed card (its presser's own view of a
        DingTalk card is redrawn too)."""
        vendor, channel, card_id = card_of_field(field)
        if vendor == "feishu":
            await self._feishu.redraw(channel, card_id, outcome)
        elif vendor == "dingtalk":
            presser = click.card_ref.get("userid", "") if click is not None else ""
            await self._dingtalk.redraw(channel, card_id, outcome, presser)
