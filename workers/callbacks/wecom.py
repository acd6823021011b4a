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

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from activities.notify.errors import Refused, Uncertain
from activities.notify.wecom_app import WeComApp
from activities.notify.wecom_card import answered_card
from riskflow.config.channels import WeComAppChannel
from riskflow.config.sites import Language
from riskflow.infra.redis import RedisClient
from riskflow.names import app_card_key
from workers.callbacks.clicks import Click
from workers.callbacks.rejection import CallbackRejected
from workers.callbacks.wecom_crypto import WeComCrypto

logger = logging.getLogger(__name__)
CARD_EVENT = "template_card_event"
CARD_TTL_SECONDS = 72 * 3600
UPDATE_ATTEMPTS, UPDATE_BACKOFF_SECONDS = 3, 1.0


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
    ) -> Click | None:
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
        return Click(
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
    (`app_card_key`) as its starting point. A failed update is logged, never raised: the
    incident has changed either way."""

    def __init__(self, receivers: Mapping[str, WeComReceiver], redis: RedisClient) -> None:
        self._receivers = receivers
        self._redis = redis

    async def answered(
        self, click: Click, line: str, incident_id: str, language: Language, closed: bool
    ) -> None:
        code, task = click.card_ref.get("response_code", ""), click.card_ref.get("task_id", "")
        update: dict[str, Any] = {"atall": 1, "response_code": code}
        stored = None if closed else await self._redis.get(app_card_key(click.channel, task))
        if stored is None:
            update["button"] = {"replace_name": line}
        else:
            card = answered_card(json.loads(stored), line, incident_id, language)
            update["template_card"] = card
            key = app_card_key(click.channel, task)
            await self._redis.set(key, json.dumps(card), ex=CARD_TTL_SECONDS)
        await self._send(click, update)

    async def refused(self, click: Click, line: str) -> None:
        """Only the presser's card changes: the buttons replaced by why nothing happened."""
        update = {
            "userids": [click.user_ids.get("userid", "")],
            "response_code": click.card_ref.get("response_code", ""),
            "button": {"replace_name": line},
        }
        await self._send(click, update)

    async def _send(self, click: Click, update: dict[str, Any]) -> None:
        """The update, tried `UPDATE_ATTEMPTS` times while WeCom is busy or its answer lost
        (a response code works once: a repeat of an update that did land is refused, and
        changes nothing)."""
        receiver = self._receivers.get(click.channel)
        if receiver is None or not update.get("response_code"):
            return
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            try:
                await receiver.api.update_card(update)
                return
            except (Refused, Uncertain) as exc:
                final = attempt == UPDATE_ATTEMPTS or (
                    isinstance(exc, Refused) and not exc.retryable
                )
                if final:
                    logger.warning(
                        "%s: card of click %s not updated: %s", click.channel, click.event_id, exc
                    )
                    return
            await asyncio.sleep(UPDATE_BACKOFF_SECONDS * attempt)


def _signed(query: Mapping[str, str], now: float, window: float) -> tuple[str, str, str]:
    signature, timestamp, nonce = (
        query.get(k, "") for k in ("msg_signature", "timestamp", "nonce")
    )
    if not (signature and timestamp and nonce):
        raise CallbackRejected("malformed", "msg_signature, timestamp and nonce are required")
    try:
        sent = int(timestamp)  # never float(): "nan" would pass any window
    except ValueError:
        raise CallbackRejected("malformed", f"timestamp {timestamp[:20]!r}") from None
    if abs(now - sent) > window:
        raise CallbackRejected("stale", f"signed {now - sent:.0f}s from now")
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
