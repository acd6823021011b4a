"""What DingTalk POSTs to a card's registered callback URL when a user presses a button
(HTTP mode), built and sent as open.dingtalk.com/document/development/event-callback-card
describes it:

- body (JSON, compact, UTF-8): `{"type": "actionCallback", "outTrackId", "corpId", "userId",
  "content"}`, `content` a JSON *string* `{"cardPrivateData": {"actionIds": [id], "params":
  {...}}}`. With `extras`, also the fields of the Stream SDK's sample payload
  (open-dingtalk/dingtalk-stream-sdk-python `card_callback_message.py`): `extension` "{}",
  `spaceType`, `spaceId`, `userIdType`, `value` (= `content`); the HTTP docs show none.
- headers, only if the route was registered with an `apiSecret` ("如注册时提供了apiSecret，则收到
  的HTTP请求Header中包含签名相关Header"): `x-ddpaas-signature-timestamp` (epoch ms, the unit of
  every sample) and `x-ddpaas-signature` = base64 HMAC-SHA256(apiSecret, that timestamp)
  (`workers.callbacks.dingtalk_crypto.card_signature`).
- DingTalk waits 2 s ("请在 2 秒内完成业务处理并响应"); retries are not documented, so N
  deliveries here are N identical requests (same bytes, same headers).
- The answer may update the card: `{"cardData", "userPrivateData", "cardUpdateOptions"}`
  ("事件回调响应"); the admin call applies each 2xx JSON answer.

`tamper` makes a delivery the product must refuse: `signature` (altered), `stale_timestamp`
(signed correctly, an hour old), `corp` (another corpId in the body), `track` (an outTrackId
that is no card of the product's).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from workers.callbacks.dingtalk_crypto import card_signature

Tamper = Literal["signature", "stale_timestamp", "corp", "track"]
TAMPERS: tuple[str, ...] = ("signature", "stale_timestamp", "corp", "track")
STALE_SECONDS = 3600


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Click:
    """One press of `action_id` by `user_id` on the card `out_track_id`, in `space`."""

    corp_id: str
    out_track_id: str
    user_id: str
    action_id: str
    params: dict[str, str]
    space_type: str
    space_id: str

    def content(self) -> str:
        return compact({"cardPrivateData": {"actionIds": [self.action_id], "params": self.params}})

    def body(self, tamper: Tamper | None, extras: bool) -> bytes:
        corp = f"{self.corp_id}-other" if tamper == "corp" else self.corp_id
        track = f"{self.out_track_id}-other" if tamper == "track" else self.out_track_id
        found: dict[str, Any] = {"type": "actionCallback", "outTrackId": track, "corpId": corp}
        found |= {"userId": self.user_id, "content": self.content()}
        if extras:
            found |= {"extension": "{}", "spaceType": self.space_type, "spaceId": self.space_id}
            found |= {"userIdType": 1, "value": self.content()}
        return compact(found).encode()


def signed_headers(api_secret: str | None, now: float, tamper: Tamper | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if api_secret is None:
        return headers
    stale = STALE_SECONDS if tamper == "stale_timestamp" else 0
    timestamp = str(int((now - stale) * 1000))
    signature = card_signature(api_secret, timestamp)
    if tamper == "signature":
        signature = card_signature(api_secret + "-wrong", timestamp)
    headers["x-ddpaas-signature-timestamp"] = timestamp
    headers["x-ddpaas-signature"] = signature
    return headers


@dataclass(frozen=True)
class Delivery:
    status: int | None  # None: no answer (timed out or no connection)
    body: str
    seconds: float
    timed_out: bool


async def post(url: str, body: bytes, headers: dict[str, str], deadline: float) -> Delivery:
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=deadline)
    try:
        async with (
            aiohttp.ClientSession(trust_env=False, timeout=timeout) as session,
            session.post(url, data=body, headers=headers) as response,
        ):
            text = (await response.read()).decode(errors="replace")
            return Delivery(response.status, text, time.monotonic() - started, False)
    except TimeoutError:
        return Delivery(None, "", time.monotonic() - started, True)
    except aiohttp.ClientError as exc:
        return Delivery(None, f"{type(exc).__name__}: {exc}", time.monotonic() - started, False)


def answer_json(delivery: Delivery) -> dict[str, Any] | None:
    """The answer's JSON object when it can update the card (2xx), else None."""
    if delivery.status is None or not 200 <= delivery.status < 300 or not delivery.body.strip():
        return None
    try:
        found = json.loads(delivery.body)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
