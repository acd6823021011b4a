"""What WeCom sends to an app's receive URL, built and sent as WeCom does: the encrypted
`template_card_event` of a click (developer.work.weixin.qq.com/document/path/90240), and the
URL check made when an admin saves the URL (/90238, /90930); crypto as /90968
(`workers.callbacks.wecom_crypto.WeComCrypto`).

- A click: the event XML (fields and CDATA as /90240's example), sealed with the app's token
  and EncodingAESKey, in `<xml><ToUserName/><Encrypt/><AgentID/></xml>` (the order of the
  vendor's Python sample; /90238 shows AgentID before Encrypt), POSTed to
  `url?msg_signature=&timestamp=&nonce=` (Content-Type text/xml: the docs name none). WeCom
  waits 5 s ("五秒内收不到响应会断掉连接") and retries: each delivery here is sealed afresh
  (timestamp, nonce, random prefix), with the same XML (the same CreateTime and ResponseCode).
- The URL check: GET `url?msg_signature=&timestamp=&nonce=&echostr=` with a random number
  sealed in `echostr`; passed when the answer, within 1 s, is that number exactly.

`tamper` makes a delivery the product must refuse: `signature` (msg_signature altered),
`corp` (sealed for another corp id), `stale_timestamp` (signed correctly, an hour old).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import aiohttp
from yarl import URL

from workers.callbacks.wecom_crypto import Sealed, WeComCrypto

Tamper = Literal["signature", "corp", "stale_timestamp"]
TAMPERS: tuple[str, ...] = ("signature", "corp", "stale_timestamp")
STALE_SECONDS = 3600


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


@dataclass(frozen=True)
class Click:
    """One `template_card_event`: who clicked which key of which card, with the code issued
    for it and the dropdown choices (question_key, option ids)."""

    corp_id: str
    agent_id: int
    userid: str
    create_time: int
    event_key: str
    task_id: str
    response_code: str
    selected: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def xml(self) -> bytes:
        parts = [
            f"<ToUserName>{cdata(self.corp_id)}</ToUserName>",
            f"<FromUserName>{cdata(self.userid)}</FromUserName>",
            f"<CreateTime>{self.create_time}</CreateTime>",
            f"<MsgType>{cdata('event')}</MsgType>",
            f"<Event>{cdata('template_card_event')}</Event>",
            f"<EventKey>{cdata(self.event_key)}</EventKey>",
            f"<TaskId>{cdata(self.task_id)}</TaskId>",
            f"<CardType>{cdata('button_interaction')}</CardType>",
            f"<ResponseCode>{cdata(self.response_code)}</ResponseCode>",
            f"<AgentID>{self.agent_id}</AgentID>",
        ]
        if self.selected:
            items = "".join(
                f"<SelectedItem><QuestionKey>{cdata(key)}</QuestionKey><OptionIds>"
                + "".join(f"<OptionId>{cdata(i)}</OptionId>" for i in ids)
                + "</OptionIds></SelectedItem>"
                for key, ids in self.selected
            )
            parts.append(f"<SelectedItems>{items}</SelectedItems>")
        return ("<xml>" + "".join(parts) + "</xml>").encode()


@dataclass(frozen=True)
class Delivery:
    status: int | None  # None: no answer (timed out or no connection)
    body: str
    seconds: float
    timed_out: bool


def _nonce() -> str:
    return str(secrets.randbelow(9 * 10**9) + 10**9)  # WeCom's nonces: 10 digits


def seal(
    token: str, aes_key: str, corp_id: str, message: bytes, now: float, tamper: Tamper | None
) -> Sealed:
    """`message` sealed as WeCom seals it, or corrupted as `tamper` says."""
    receiver = f"{corp_id}-other" if tamper == "corp" else corp_id
    timestamp = str(int(now) - (STALE_SECONDS if tamper == "stale_timestamp" else 0))
    sealed = WeComCrypto(token, aes_key, receiver).encrypt(message, timestamp, _nonce())
    if tamper == "signature":
        flipped = "0" if sealed.signature[-1] != "0" else "1"
        return Sealed(sealed.encrypt, sealed.signature[:-1] + flipped, timestamp, sealed.nonce)
    return sealed


async def _send(
    method: str, url: URL, body: bytes | None, deadline: float
) -> tuple[Delivery, bytes]:
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=deadline)
    headers = {"Content-Type": "text/xml"} if body is not None else {}
    try:
        async with (
            aiohttp.ClientSession(trust_env=False, timeout=timeout) as session,
            session.request(method, url, data=body, headers=headers) as response,
        ):
            raw = await response.read()
            text = raw.decode(errors="replace")
            return Delivery(response.status, text, time.monotonic() - started, False), raw
    except TimeoutError:
        return Delivery(None, "", time.monotonic() - started, True), b""
    except aiohttp.ClientError as exc:
        return Delivery(
            None, f"{type(exc).__name__}: {exc}", time.monotonic() - started, False
        ), b""


async def deliver_click(
    click: Click,
    callback: tuple[str, str],
    url: str,
    clock: Callable[[], float],
    deliveries: int,
    tamper: Tamper | None,
    deadline: float,
) -> list[dict[str, Any]]:
    """POST the click `deliveries` times (WeCom's retries), each sealed afresh at `clock()`."""
    token, aes_key = callback
    found: list[dict[str, Any]] = []
    for _ in range(deliveries):
        sealed = seal(token, aes_key, click.corp_id, click.xml(), clock(), tamper)
        envelope = (
            f"<xml><ToUserName>{cdata(click.corp_id)}</ToUserName>"
            f"<Encrypt>{cdata(sealed.encrypt)}</Encrypt>"
            f"<AgentID>{cdata(str(click.agent_id))}</AgentID></xml>"
        ).encode()
        query = {"msg_signature": sealed.signature, "timestamp": sealed.timestamp}
        target = URL(url).update_query(query | {"nonce": sealed.nonce})
        delivery, _ = await _send("POST", target, envelope, deadline)
        found.append(asdict(delivery))
    return found


async def check_url(
    callback: tuple[str, str], corp_id: str, url: str, now: float, deadline: float
) -> dict[str, Any]:
    """WeCom's check of a receive URL: ok when the answer is the sealed number exactly."""
    token, aes_key = callback
    plain = str(secrets.randbelow(9 * 10**18) + 10**18)  # like the vendor's 1616140317555161061
    sealed = seal(token, aes_key, corp_id, plain.encode(), now, None)
    query = {"msg_signature": sealed.signature, "timestamp": sealed.timestamp}
    target = URL(url).update_query(query | {"nonce": sealed.nonce, "echostr": sealed.encrypt})
    delivery, raw = await _send("GET", target, None, deadline)
    return asdict(delivery) | {"ok": delivery.status == 200 and raw == plain.encode()}
