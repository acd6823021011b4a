"""Feishu's callbacks on a custom app's callback URL, and its card updates.

- Every request (open.feishu.cn/document/event-subscription-guide/callback-subscription/
  receive-and-handle-callbacks): `POST` `{"encrypt": ...}` with `X-Lark-Request-Timestamp`
  (seconds), `X-Lark-Request-Nonce` and `X-Lark-Signature` (`feishu_crypto`). Refused when a
  header is missing, the timestamp is outside the replay window, or the signature, ciphertext
  or Verification Token is wrong; another app's callback is `wrong_receiver`. An unsigned
  request passes only as the URL check (`FeishuCrypto.url_check`).
- The URL check, when the callback URL is saved: `{"type": "url_verification", "challenge",
  "token"}` inside; the answer is `{"challenge": ...}` within 1 s.
- A card click (feishu-cards/card-callback-communication): schema 2.0, `header.event_type`
  `card.action.trigger`, `header.event_id` (one per click: its event id), `header.app_id`,
  `header.create_time`; `event.operator` the presser's `open_id`, `union_id` and, with the
  permission, `user_id`; `event.action.value` the pressed element's callback value
  (`{"key": ButtonKey}`), `event.action.option` the option picked in a `select_static`
  (On my way: the minutes; False alarm: the reason); `event.context.open_message_id` the
  card's message. Feishu waits 3 s for the answer (an empty JSON object here) and does not
  deliver a card callback again, so a click is only ever answered after it is kept
  (`workers.callbacks.app`).

`FeishuCards` redraws a card for everyone (`PATCH` of the shared card, from the card kept at
send time) when the incident changed, and otherwise tells the presser alone, in a message
from the app's bot (a shared card cannot show one person something else).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from activities.notify.apps import AppSenders
from activities.notify.feishu_app import FeishuApp
from activities.notify.feishu_card import answered, content, note
from riskflow.config.channels import FeishuAppChannel
from riskflow.contracts.card_actions import (
    ETA_QUESTION,
    REASONS,
    ButtonKey,
    CardClick,
    ClickOutcome,
)
from workers.callbacks.feishu_crypto import FeishuCrypto
from workers.callbacks.rejection import CallbackRejected, signed_at

CARD_EVENT = "card.action.trigger"
HEADERS = ("X-Lark-Request-Timestamp", "X-Lark-Request-Nonce", "X-Lark-Signature")


@dataclass(frozen=True)
class FeishuReceiver:
    """One app channel's callback URL: `name`, its config, its callback crypto, its API."""

    name: str
    channel: FeishuAppChannel
    crypto: FeishuCrypto
    api: FeishuApp

    def open(
        self, headers: Mapping[str, str], body: bytes, now: float, window: float
    ) -> dict[str, Any]:
        """The callback inside a request, checked (see the module docstring)."""
        timestamp, nonce, signature = (headers.get(h, "") for h in HEADERS)
        if not (timestamp or nonce or signature):  # the URL check may come unsigned
            try:
                return self.crypto.url_check(body)
            except CallbackRejected:
                # One answer for every failure: telling bad padding from the rest would
                # let anyone decrypt a captured callback, a block at a time.
                raise CallbackRejected(
                    "malformed", "an unsigned request that is no URL check"
                ) from None
        if not (timestamp and nonce and signature):
            raise CallbackRejected("malformed", "the X-Lark-Request-* headers are required")
        signed_at(timestamp, now, window)
        return self.crypto.open(timestamp, nonce, signature, body)

    def click(self, callback: Mapping[str, Any], now: float) -> CardClick | None:
        """The card click a callback carries; None for any other callback (answered)."""
        header = _object(callback, "header")
        if header.get("event_type") != CARD_EVENT:
            return None
        if header.get("app_id") != self.channel.app_id:
            raise CallbackRejected("wrong_receiver", f"app {str(header.get('app_id'))[:40]}")
        event = _object(callback, "event")
        action, operator = _object(event, "action"), _object(event, "operator")
        found = event.get("context")
        context: dict[str, Any] = found if isinstance(found, dict) else {}
        event_id = header.get("event_id")
        if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
            raise CallbackRejected("malformed", "no header.event_id")
        user_ids = {
            k: v
            for k in ("user_id", "union_id", "open_id")
            if isinstance(v := operator.get(k), str) and v
        }
        if "open_id" not in user_ids:
            raise CallbackRejected("malformed", "no event.operator.open_id")
        key, selected = _pressed(action)
        message_id = context.get("open_message_id")
        return CardClick(
            vendor="feishu",
            channel=self.name,
            event_id=event_id,
            user_ids=user_ids,
            key=key,
            at=_seconds(header.get("create_time"), now),
            selected=selected,
            card_ref={
                "message_id": message_id if isinstance(message_id, str) else "",
                "open_id": user_ids["open_id"],
            },
        )


def _object(holder: Mapping[str, Any], name: str) -> dict[str, Any]:
    found = holder.get(name)
    if not isinstance(found, dict):
        raise CallbackRejected("malformed", f"no {name!r} object")
    return found


def _pressed(action: Mapping[str, Any]) -> tuple[str, dict[str, list[str]]]:
    """The button's key and the card's choices: an On my way's minutes as the ETA answer, a
    False alarm's reason folded into its key (`ButtonKey.reason`)."""
    value = action.get("value")
    key = value.get("key") if isinstance(value, dict) else None
    if not isinstance(key, str):
        return "", {}  # not riskflow's card: refused in the click's workflow, told to nobody
    option = action.get("option")
    button = ButtonKey.decode(key)
    if button is None or not isinstance(option, str) or not option:
        return key[:1024], {}
    if button.action == "on_my_way":
        return key, {ETA_QUESTION: [option]}
    if button.action == "false_alarm" and button.reason is None and option in REASONS:
        return ButtonKey("false_alarm", button.incident_id, option).encode(), {}
    return key, {}


def _seconds(create_time: Any, now: float) -> float:
    """`header.create_time` in epoch seconds: Feishu documents microseconds and sends
    milliseconds; either reads, anything else is `now`."""
    text = str(create_time) if isinstance(create_time, int | str) else ""
    if not text.isdigit():
        return now
    value = int(text)
    for scale in (1e6, 1e3, 1.0):
        seconds = value / scale
        if abs(seconds - now) < 366 * 86400:
            return seconds
    return now


class FeishuCards:
    """How Feishu cards are told a click's outcome (`workers.callbacks.cards.AppCards`)."""

    def __init__(self, receivers: Mapping[str, FeishuReceiver], apps: AppSenders) -> None:
        self._receivers = receivers
        self._apps = apps

    async def tell_presser(self, click: CardClick, outcome: ClickOutcome) -> None:
        """What only the presser is told: a card from the app's bot, to them alone."""
        receiver = self._receivers.get(click.channel)
        open_id = click.card_ref.get("open_id", "")
        if receiver is None or not outcome.line or not open_id:
            return
        key = "rf-" + hashlib.sha256(click.event_id.encode()).hexdigest()[:40]
        title = f"riskflow · {outcome.incident_id}" if outcome.incident_id else "riskflow"
        await receiver.api.tell(open_id, content(note(title, outcome.line)), key)

    async def redraw(self, channel: str, message_id: str, outcome: ClickOutcome) -> None:
        """The shared card `message_id` redrawn for everyone from the card kept at send time
        (not kept, or expired: it stays as it is)."""
        receiver = self._receivers.get(channel)
        sent = await self._apps.kept(channel, message_id)
        if receiver is None or sent is None:
            return
        language, incident = outcome.language, outcome.incident_id
        redrawn = answered(sent, outcome.line, incident, language, outcome.closed)
        await receiver.api.update(message_id, content(redrawn))
        await self._apps.keep(channel, message_id, redrawn)
