"""DingTalk's card callbacks over HTTP on the route a `dingtalk_app` channel registered, and
its card updates.

A click (open.dingtalk.com/document/development/event-callback-card): `POST` with
`x-ddpaas-signature-timestamp` (epoch milliseconds) and `x-ddpaas-signature`
(`dingtalk_crypto`: it signs the timestamp only) and the JSON body `{"type":
"actionCallback", "outTrackId", "corpId", "userId", "content": "<JSON string:
{"cardPrivateData": {"actionIds": [<action id>], "params": {...}}}>"}`; the action id and
params are the template's (`activities.notify.dingtalk_card`): `incident` names the incident,
`eta` the minutes picked. DingTalk waits 2 s for the answer (an empty JSON object here).

The body is not signed, so it is read as claims checked against what riskflow knows: the
corp must be the channel's, and the card one riskflow sent for the incident the click names
(its `outTrackId` carries a seal of both, `dingtalk_card.ours`); the signature is spent once
(the listener's replay check), so a captured request cannot be sent again with another
body. HTTP callbacks carry no event id: a click's is made of its
card, person, action and signed time (DingTalk documents no redelivery).

`DingTalkCards` changes the card's variables (`PUT /v1.0/card/instances`, merged by key):
for everyone when the incident changed (and for those told something alone before, whose own
data would hide it), else for the presser alone (`privateData`). One card instance is in
every group and robot chat of the channel, so one update changes every copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from activities.notify import dingtalk_card
from activities.notify.cards import CARD_TTL_SECONDS
from activities.notify.dingtalk_app import DingTalkApp
from activities.notify.errors import Refused
from riskflow.config.channels import DingTalkAppChannel
from riskflow.contracts.card_actions import ETA_QUESTION, KEY_PREFIX, CardClick, ClickOutcome
from riskflow.infra.redis import RedisClient, as_text
from riskflow.names import card_told_key
from workers.callbacks.dingtalk_crypto import timestamp_seconds, verify_card_callback
from workers.callbacks.rejection import CallbackRejected, within

logger = logging.getLogger(__name__)
CARD_EVENT = "actionCallback"
TIMESTAMP, SIGNATURE = "x-ddpaas-signature-timestamp", "x-ddpaas-signature"


@dataclass(frozen=True)
class DingTalkReceiver:
    """One app channel's clicks: `name`, its config, its API, and `secret`: the route's
    apiSecret in HTTP mode (it signs each click and seals the cards), the app's own secret in
    Stream mode (the cards' seal only: the connection itself is the proof)."""

    name: str
    channel: DingTalkAppChannel
    secret: str
    api: DingTalkApp

    def click(
        self, headers: Mapping[str, str], body: bytes, now: float, window: float
    ) -> CardClick | None:
        """The card click an HTTP request carries (None: another callback, answered and
        ignored); `CallbackRejected` when it is not DingTalk's for this channel."""
        timestamp, signature = headers.get(TIMESTAMP, ""), headers.get(SIGNATURE, "")
        if not (timestamp and signature):
            raise CallbackRejected("malformed", f"{TIMESTAMP} and {SIGNATURE} are required")
        sent = timestamp_seconds(timestamp)
        within(sent, now, window)
        verify_card_callback(self.secret, timestamp, signature)
        return self._read(_json_object(body), timestamp, sent)

    def stream_click(self, data: str, message_id: str, at: float) -> CardClick | None:
        """The card click a Stream CALLBACK frame carries (`data`: its JSON string): named by
        the frame's `messageId`, which a re-push keeps."""
        if not message_id or len(message_id) > 100:
            raise CallbackRejected("malformed", "no messageId")
        return self._read(_json_object(data), f"stream:{message_id}", at)

    def _read(self, data: dict[str, Any], occasion: str, at: float) -> CardClick | None:
        """The click in a callback's data; `occasion` (the signed time, the frame's id)
        tells one click from another of the same person, card and button."""
        if data.get("type", CARD_EVENT) != CARD_EVENT:
            return None
        track, user = data.get("outTrackId"), data.get("userId")
        if data.get("corpId") != self.channel.corp_id:
            raise CallbackRejected("wrong_receiver", f"corp {str(data.get('corpId'))[:40]}")
        if not isinstance(user, str) or not user or len(user) > 128:
            raise CallbackRejected("malformed", "no userId")
        action, params = _pressed(data.get("content"))
        incident = params.get("incident", "")
        if not isinstance(track, str) or not dingtalk_card.ours(track, incident, self.secret):
            raise CallbackRejected("wrong_receiver", f"card {str(track)[:70]}")
        digest = hashlib.sha256(f"{track}\n{user}\n{action}\n{occasion}".encode())
        eta = params.get("eta")
        return CardClick(
            vendor="dingtalk",
            channel=self.name,
            event_id=digest.hexdigest()[:40],
            user_ids={"userid": user},
            key=f"{KEY_PREFIX}:{action}:{incident}"[:1024],
            at=at,
            selected={ETA_QUESTION: [eta]} if isinstance(eta, str) else {},
            card_ref={"out_track_id": track, "userid": user},
        )


def _json_object(raw: bytes | str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CallbackRejected("malformed", f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise CallbackRejected("malformed", "not a JSON object")
    return parsed


def _pressed(content: Any) -> tuple[str, dict[str, str]]:
    """The action id and the string params of `content` (a JSON string)."""
    if not isinstance(content, str):
        raise CallbackRejected("malformed", "no content")
    private = _json_object(content).get("cardPrivateData")
    if not isinstance(private, dict):
        raise CallbackRejected("malformed", "no cardPrivateData")
    actions, params = private.get("actionIds"), private.get("params")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], str):
        raise CallbackRejected("malformed", "no actionIds")
    found = params if isinstance(params, dict) else {}
    return actions[0][:64], {k: s for k, v in found.items() if (s := _param(v)) is not None}


def _param(value: Any) -> str | None:
    """A param as a string: DingTalk declares them `Map<String, Object>`, so a select's
    choice may come as a number or as `{"value": ...}`."""
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        return text[:128]
    return None


class DingTalkCards:
    """How DingTalk cards are told a click's outcome (`workers.callbacks.cards.AppCards`)."""

    def __init__(self, receivers: Mapping[str, DingTalkReceiver], redis: RedisClient) -> None:
        self._receivers = receivers
        self._redis = redis

    async def tell_presser(self, click: CardClick, outcome: ClickOutcome) -> None:
        """What only the presser is told: their own data over the card's (why their click
        changed nothing, or the reasons of a false alarm)."""
        receiver = self._receivers.get(click.channel)
        track, user = click.card_ref.get("out_track_id", ""), click.card_ref.get("userid", "")
        if receiver is None or not track or not user or not outcome.line:
            return
        mine = {"status": dingtalk_card.status(outcome.line)}
        mine |= {"state": "reasons"} if outcome.reasons else {}
        async with asyncio.timeout(5):  # first: a redraw once they see it must include them
            await self._redis.sadd(card_told_key(click.channel, track), user)
            await self._redis.expire(card_told_key(click.channel, track), CARD_TTL_SECONDS)
        await receiver.api.update(dingtalk_card.update(track, private={user: mine}))

    async def redraw(
        self, channel: str, track: str, outcome: ClickOutcome, presser: str = ""
    ) -> None:
        """The card's state and line for everyone; then, one by one, for those told something
        alone before and the `presser` of this card (their own data would hide it). One of
        them gone from the organisation (`param.userIdNotExist`) does not keep it from the
        others."""
        receiver = self._receivers.get(channel)
        if receiver is None:
            return
        public = {
            "status": dingtalk_card.status(outcome.line),
            "state": "closed" if outcome.closed else "claimed",
        }
        await receiver.api.update(dingtalk_card.update(track, public))
        told = {as_text(r) for r in await self._redis.smembers(card_told_key(channel, track))}
        for user in sorted(told | ({presser} if presser else set())):
            try:
                await receiver.api.update(dingtalk_card.update(track, private={user: public}))
            except Refused as exc:
                if exc.retryable:
                    raise
                logger.warning("%s: %s's own view of %s not redrawn: %s", channel, user, track, exc)
