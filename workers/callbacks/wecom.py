"""WeCom's callbacks on a self-built app's receive URL, and its card updates.

- URL check (developer.work.weixin.qq.com/document/path/90930): `GET ?msg_signature=
  &timestamp=&nonce=&echostr=`; the answer is the decrypted echostr, within 1 s.
- Events (document/path/90240, 90241; crypto 90968): `POST ?msg_signature=&timestamp=&nonce=`
  with `<xml><ToUserName/><Encrypt/><AgentID/></xml>`; inside, a card click is
  `MsgType` event, `Event` template_card_event, with `FromUserName` (the member's userid),
  `CreateTime` (s), `EventKey` (the button's key), `TaskId`, `ResponseCode` (single use: one
  `update_template_card` of that card) and `SelectedItems` (the card's choices). WeCom wants
  an answer within 5 s; an empty 200 says "received". A retry of the same click carries the
  same `FromUserName`, `CreateTime`, `TaskId` and `EventKey`: together they are its event id.

Refused (`CallbackRejected`, answered 400 with nothing acted on): a missing parameter, a
timestamp outside the replay window, a bad signature or ciphertext, another corp's or app's
message, XML that is not WeCom's. The XML is parsed with defusedxml, DTDs forbidden.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from activities.notify.cards import CARD_TTL_SECONDS
from activities.notify.wecom_app import WeComApp
from activities.notify.wecom_card import answered_card, reasons_card
from riskflow.config.channels import WeComAppChannel
from riskflow.contracts.card_actions import CardClick, ClickOutcome
from riskflow.infra.redis import RedisClient
from riskflow.names import app_card_key
from workers.callbacks.rejection import CallbackRejected, signed_at
from workers.callbacks.wecom_crypto import WeComCrypto

logger = logging.getLogger(__name__)
CARD_EVENT = "template_card_event"


@dataclass(frozen=True)
class WeComReceiver:
    """One app channel's receive URL: `name`, its config, its callback crypto and its API."""

    name: str
    channel: WeComAppChannel
    crypto: WeComCrypto
    api: WeComApp

    def url_check(self, query: Mapping[str, str], now: float, window: float) -> bytes:
        """The plaintext of the URL check's echostr."""
        signature, timestamp, nonce = _signed(query, now, window)
        echostr = query.get("echostr", "")
        if not echostr:
            raise CallbackRejected("malformed", "no echostr")
        return self.crypto.decrypt(signature, timestamp, nonce, echostr)

    def click(
        self, query: Mapping[str, str], body: bytes, now: float, window: float
    ) -> CardClick | None:
        """The card click this POST carries; None for another event (answered, ignored)."""
        signature, timestamp, nonce = _signed(query, now, window)
        encrypt = _text(_xml(body), "Encrypt")
        event = _xml(self.crypto.decrypt(signature, timestamp, nonce, encrypt))
        if _text(event, "MsgType", "") != "event" or _text(event, "Event", "") != CARD_EVENT:
            return None
        if _text(event, "AgentID", "") != str(self.channel.agent_id):
            raise CallbackRejected("wrong_receiver", f"agent {_text(event, 'AgentID', '')}")
        user, created = _text(event, "FromUserName"), _text(event, "CreateTime")
        task, key = _text(event, "TaskId"), _text(event, "EventKey")
        try:
            at = float(int(created))
        except ValueError:
            raise CallbackRejected("malformed", f"CreateTime {created[:20]!r}") from None
        event_id = hashlib.sha256(f"{user}\n{created}\n{task}\n{key}".encode()).hexdigest()[:40]
        return CardClick(
            vendor="wecom",
            channel=self.name,
            event_id=event_id,
            user_ids={"userid": user},
            key=key,
            at=at,
            selected=_selected(event),
            card_ref={"task_id": task, "response_code": _text(event, "ResponseCode", "")},
        )


class WeComCards:
    """`workers.callbacks.clicks.Cards` for WeCom: `update_template_card` with the click's
    response code (single use: one update per click), the card kept by the notify activity
    (`app_card_key`) as its starting point. `Refused` / `Uncertain` as the API raises them
    (the workflow retries the busy ones)."""

    def __init__(self, receivers: Mapping[str, WeComReceiver], redis: RedisClient) -> None:
        self._receivers = receivers
        self._redis = redis

    async def tell(self, click: CardClick, outcome: ClickOutcome) -> None:
        receiver = self._receivers.get(click.channel)
        code, task = click.card_ref.get("response_code", ""), click.card_ref.get("task_id", "")
        if receiver is None or not code:
            return
        key = app_card_key(click.channel, task)
        mine = {"userids": [click.user_ids.get("userid", "")], "response_code": code}
        if outcome.reasons:  # the presser's card asks why
            raw = await self._redis.get(key)
            sent = json.loads(raw) if raw is not None else None
            card = reasons_card(sent, task, outcome.incident_id, outcome.language)
            await receiver.api.update_card(mine | {"template_card": card})
            return
        if not outcome.everyone:  # only the presser's card: the buttons replaced by why not
            await receiver.api.update_card(mine | {"button": {"replace_name": outcome.line}})
            return
        update: dict[str, Any] = {"atall": 1, "response_code": code}
        stored = None if outcome.closed else await self._redis.get(key)
        if stored is None:
            update["button"] = {"replace_name": outcome.line}
        else:
            line, incident, language = outcome.line, outcome.incident_id, outcome.language
            update["template_card"] = answered_card(json.loads(stored), line, incident, language)
        await receiver.api.update_card(update)
        if "template_card" in update:
            kept = json.dumps(update["template_card"])
            await self._redis.set(key, kept, ex=CARD_TTL_SECONDS)


def _signed(query: Mapping[str, str], now: float, window: float) -> tuple[str, str, str]:
    signature, timestamp, nonce = (
        query.get(k, "") for k in ("msg_signature", "timestamp", "nonce")
    )
    if not (signature and timestamp and nonce):
        raise CallbackRejected("malformed", "msg_signature, timestamp and nonce are required")
    signed_at(timestamp, now, window)
    return signature, timestamp, nonce


def _xml(data: bytes) -> Element:
    try:
        return fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise CallbackRejected("malformed", f"not WeCom's XML: {type(exc).__name__}") from None


_REQUIRED = object()


def _text(element: Element, tag: str, default: object = _REQUIRED) -> str:
    found = element.find(tag)
    if found is None or found.text is None:
        if default is _REQUIRED:
            raise CallbackRejected("malformed", f"no <{tag}>")
        return str(default)
    return found.text.strip()


def _selected(event: Element) -> dict[str, list[str]]:
    """SelectedItems/SelectedItem: QuestionKey -> OptionIds/OptionId values."""
    picked: dict[str, list[str]] = {}
    for item in event.iterfind("SelectedItems/SelectedItem"):
        question = _text(item, "QuestionKey", "")
        options = [o.text.strip() for o in item.iterfind("OptionIds/OptionId") if o.text]
        if question:
            picked[question] = options
    return picked
