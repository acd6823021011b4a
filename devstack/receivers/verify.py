"""Each vendor's checks, as its documentation states them, answering with the vendor's own
error shape. Pure functions: (query, headers, raw body, the channel's secret, now) -> either the
parsed payload or an error answer.

Sources: DingTalk https://open.dingtalk.com/document/robots/customize-robot-security-settings
and https://open.dingtalk.com/document/robots/custom-robot-access; WeCom
https://developer.work.weixin.qq.com/document/path/91770; Feishu
https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot. The generic webhook's
scheme is riskflow's own (`activities.notify.webhook`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from riskflow.contracts.notifications import NotificationRequest

SIGNATURE_WINDOW_SECONDS = 3600  # DingTalk and Feishu: within one hour of their clock
WEBHOOK_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class Refusal:
    """The vendor's error answer: HTTP `status` (vendors answer errors with 200) and body."""

    status: int
    body: dict[str, Any]
    reason: str


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _nonempty(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


# -- generic webhook -----------------------------------------------------------------------


def webhook(
    headers: Mapping[str, str], raw: bytes, secret: str | None, now: float
) -> dict[str, Any] | Refusal:
    """Timestamp within 5 minutes, `sha256=` HMAC over "{timestamp}." + body, the
    Idempotency-Key header equal to the body's, the body a NotificationRequest."""

    def refuse(status: int, reason: str) -> Refusal:
        return Refusal(status, {"error": reason}, reason)

    timestamp = headers.get("X-Riskflow-Timestamp", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > WEBHOOK_WINDOW_SECONDS:
        return refuse(401, "missing or stale X-Riskflow-Timestamp")
    if secret is not None:
        mac = hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256)
        given = headers.get("X-Riskflow-Signature", "")
        if not hmac.compare_digest(given, "sha256=" + mac.hexdigest()):
            return refuse(401, "signature does not match")
    payload = _json(raw)
    if not isinstance(payload, dict):
        return refuse(400, "body is not a JSON object")
    try:
        NotificationRequest.model_validate(payload)
    except ValidationError as exc:
        return refuse(400, f"not a notification request: {exc.error_count()} errors")
    if headers.get("Idempotency-Key") != payload["idempotency_key"]:
        return refuse(400, "Idempotency-Key header missing or not the body's idempotency_key")
    if not _nonempty(payload.get("text")) or not _nonempty(payload.get("title")):
        return refuse(400, "title and text are required")
    return payload


# -- DingTalk ------------------------------------------------------------------------------


def _ding(code: int, message: str) -> Refusal:
    return Refusal(200, {"errcode": code, "errmsg": message}, message)


DINGTALK_MAX_BYTES = 20_000  # errcode 460101 "body 大小不合法;请保持大小在 20000bytes 以内"


def dingtalk(
    query: Mapping[str, str], headers: Mapping[str, str], raw: bytes, secret: str | None, now: float
) -> dict[str, Any] | Refusal:
    if len(raw) > DINGTALK_MAX_BYTES:
        return _ding(460101, "description: body 大小不合法;solution:请保持大小在 20000bytes 以内;")
    if secret is not None:
        timestamp, sign = query.get("timestamp", ""), query.get("sign", "")
        if (
            not timestamp.isdigit()
            or abs(now * 1000 - int(timestamp)) > SIGNATURE_WINDOW_SECONDS * 1000
        ):
            return _ding(310000, "sign not match, more: timestamp missing or too far off")
        to_sign = f"{timestamp}\n{secret}".encode()
        expected = base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha256).digest())
        if not hmac.compare_digest(sign.encode(), expected):
            return _ding(310000, "sign not match")
    if not headers.get("Content-Type", "").startswith("application/json"):
        return _ding(43004, "无效的HTTP HEADER Content-Type")
    payload = _json(raw)
    if not isinstance(payload, dict) or "msgtype" not in payload:
        return _ding(40035, "缺少参数 json")
    kind = payload["msgtype"]
    required = {
        "text": ("content",),
        "markdown": ("title", "text"),
        "link": ("title", "text", "messageUrl"),
        "actionCard": ("title", "text"),
    }
    if kind not in required:
        return _ding(40044, f"不支持的消息类型 {kind}")
    body = payload.get(kind)
    if not isinstance(body, dict) or not all(_nonempty(body.get(f)) for f in required[kind]):
        return _ding(40035, f"缺少参数 {kind}.{'/'.join(required[kind])}")
    return payload


# -- WeCom ---------------------------------------------------------------------------------

WECOM_LIMITS = {"text": 2048, "markdown": 4096}


def wecom(raw: bytes) -> dict[str, Any] | Refusal:
    def refuse(code: int, message: str) -> Refusal:
        return Refusal(200, {"errcode": code, "errmsg": message}, message)

    payload = _json(raw)
    if not isinstance(payload, dict):
        return refuse(40058, "invalid json")
    kind = payload.get("msgtype")
    if kind not in WECOM_LIMITS:
        return refuse(40008, f"invalid message type {kind}")
    body = payload.get(kind)
    content = body.get("content") if isinstance(body, dict) else None
    if not _nonempty(content):
        return refuse(44004, "empty content")
    assert isinstance(content, str)
    if len(content.encode()) > WECOM_LIMITS[kind]:
        return refuse(40058, f"{kind}.content exceeds max length {WECOM_LIMITS[kind]}")
    return payload


# -- Feishu --------------------------------------------------------------------------------

FEISHU_MAX_BYTES = 20 * 1024


def _lark(code: int, message: str) -> Refusal:
    return Refusal(200, {"code": code, "msg": message, "data": {}}, message)


def feishu(raw: bytes, secret: str | None, now: float) -> dict[str, Any] | Refusal:
    if len(raw) > FEISHU_MAX_BYTES:
        return _lark(9499, "Bad Request")
    payload = _json(raw)
    if not isinstance(payload, dict):
        return _lark(9499, "Bad Request")
    if secret is not None:
        timestamp = str(payload.get("timestamp", ""))
        key = f"{timestamp}\n{secret}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        fresh = timestamp.isdigit() and abs(now - int(timestamp)) <= SIGNATURE_WINDOW_SECONDS
        if not fresh or not hmac.compare_digest(str(payload.get("sign", "")), expected):
            return _lark(
                19021, "sign match fail or timestamp is not within one hour from current time"
            )
    kind = payload.get("msg_type")
    if kind == "interactive":
        problem = _card_problem(payload.get("card"))
    elif kind == "text":
        content = payload.get("content")
        problem = "" if isinstance(content, dict) and _nonempty(content.get("text")) else "text"
    else:
        problem = f"msg_type {kind!r}"
    if problem:
        return _lark(9499, f"Bad Request: {problem}")
    return payload


def _card_problem(card: Any) -> str:
    """What is wrong with a message card (header title, elements, buttons), or ""."""
    if not isinstance(card, dict) or not isinstance(card.get("elements"), list):
        return "card.elements"
    title = (card.get("header") or {}).get("title") or {}
    if title and (title.get("tag") != "plain_text" or not _nonempty(title.get("content"))):
        return "card.header.title"
    for element in card["elements"]:
        tag = element.get("tag") if isinstance(element, dict) else None
        if tag == "div":
            text = element.get("text") or {}
            if text.get("tag") not in ("plain_text", "lark_md") or not _nonempty(
                text.get("content")
            ):
                return "div.text"
        elif tag == "action":
            for button in element.get("actions") or []:
                if _button_problem(button):
                    return _button_problem(button)
        elif tag not in ("hr", "note", "markdown", "img"):
            return f"element tag {tag!r}"
    return ""


def _button_problem(button: Any) -> str:
    if not isinstance(button, dict) or button.get("tag") != "button":
        return "action.button"
    text = button.get("text") or {}
    if text.get("tag") not in ("plain_text", "lark_md") or not _nonempty(text.get("content")):
        return "button.text"
    url = button.get("url", "")
    if url and not str(url).startswith(("http://", "https://")):
        return "button.url"
    if button.get("type", "default") not in ("default", "primary", "danger"):
        return "button.type"
    return ""
