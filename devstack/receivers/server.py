"""The receiver's HTTP app: the generic webhook, DingTalk, WeCom and Feishu endpoints at the
paths of `riskflow.config.channels.LOCAL_PATHS`, plus `/admin`:

- `GET /admin/notifications[?channel=NAME]`: accepted notifications, oldest first, each with
  `markup`, the mentions, links, images and colours a client would make of it (`markup`),
- `GET /admin/rejections`: refused requests with the reason,
- `POST /admin/faults` `{"faults": [{"channel": NAME or "*", "times": N, "status": 200,
  "body": {...}, "headers": {...}}]}`: answer the next valid requests so (vendor errors);
  with `"delay_seconds": S` accept them and answer only after S seconds (an answer lost),
- a channel's `records.limits` (`devstack.receivers.limits.RateLimit`, in-process only): the
  vendor's own rate limit, answered with its "too fast" code,
- `POST /admin/reset`, `GET /health`.

A channel is known by its token (the DingTalk `access_token`, the WeCom `key`, the Feishu hook
token, the webhook's last path segment): the channel's name for channels without a URL, else
taken from its configured URL. An unknown token gets the vendor's "invalid token" answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from devstack.receivers import dingtalk_app, feishu_app, verify, wecom_app
from devstack.receivers.limits import TOO_FAST
from devstack.receivers.markup import active_markup
from devstack.receivers.records import Fault, Records
from riskflow.config.channels import ChannelSecrets, EmailChannel, NotificationSettings


@dataclass(frozen=True)
class Known:
    name: str
    secret: str | None


RECORDS: web.AppKey[Records] = web.AppKey("records")
CHANNELS: web.AppKey[dict[tuple[str, str], Known]] = web.AppKey("channels")


def token_of(vendor: str, url: str) -> str:
    """The credential a vendor URL carries (see the module docstring)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if vendor == "dingtalk":
        return query.get("access_token", [""])[0]
    if vendor == "wecom":
        return query.get("key", [""])[0]
    return parts.path.rstrip("/").rsplit("/", 1)[-1]


def known_channels(
    config: NotificationSettings, secrets: ChannelSecrets
) -> dict[tuple[str, str], Known]:
    known: dict[tuple[str, str], Known] = {}
    for name, channel in config.channels.items():
        if isinstance(channel, EmailChannel):
            continue
        url = secrets.url(name)
        token = token_of(channel.type, url) if url else name
        known[(channel.type, token)] = Known(name, secrets.secret(name))
    return known


_UNKNOWN_TOKEN = {
    "webhook": verify.Refusal(404, {"error": "unknown webhook"}, "unknown webhook"),
    "dingtalk": verify.Refusal(
        200, {"errcode": 300001, "errmsg": "token is not exist"}, "unknown token"
    ),
    "wecom": verify.Refusal(
        200, {"errcode": 93000, "errmsg": "invalid webhook url"}, "unknown key"
    ),
    "feishu": verify.Refusal(
        200,
        {"code": 19001, "msg": "param invalid: incoming webhook access token invalid", "data": {}},
        "unknown token",
    ),
}


def _check(
    vendor: str, request: web.Request, raw: bytes, secret: str | None
) -> dict[str, Any] | verify.Refusal:
    now = time.time()
    headers: Mapping[str, str] = request.headers
    if vendor == "webhook":
        return verify.webhook(headers, raw, secret, now)
    if vendor == "dingtalk":
        return verify.dingtalk(request.query, headers, raw, secret, now)
    if vendor == "wecom":
        return verify.wecom(raw)
    return verify.feishu(raw, secret, now)


def _token(vendor: str, request: web.Request) -> str:
    if vendor == "dingtalk":
        return request.query.get("access_token", "")
    if vendor == "wecom":
        return request.query.get("key", "")
    return request.match_info.get("token", "")


def _handler(vendor: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        records = request.app[RECORDS]
        raw = await request.read()
        known = request.app[CHANNELS].get((vendor, _token(vendor, request)))
        if known is None:
            refusal = _UNKNOWN_TOKEN[vendor]
            records.refuse("", vendor, refusal.reason)
            return web.json_response(refusal.body, status=refusal.status)
        result = _check(vendor, request, raw, known.secret)
        if isinstance(result, verify.Refusal):
            records.refuse(known.name, vendor, result.reason)
            return web.json_response(result.body, status=result.status)
        fault = records.fault_for(known.name)
        if fault is None and records.over_limit(known.name):
            records.refuse(known.name, vendor, "rate limit")
            status, body = TOO_FAST[vendor]
            return web.json_response(body, status=status)
        if fault is None:
            return _accept(records, known.name, vendor, result)
        if fault.delay_seconds:
            answer = _accept(records, known.name, vendor, result)
            await asyncio.sleep(fault.delay_seconds)
            return answer
        return web.json_response(fault.body, status=fault.status, headers=fault.headers)

    return handle


def _accept(records: Records, name: str, vendor: str, payload: dict[str, Any]) -> web.Response:
    markup = active_markup(vendor, payload)
    if vendor == "webhook":
        key = payload["idempotency_key"]
        if key in records.seen_keys:  # the receiver dedupes, as webhook receivers should
            records.duplicates += 1
            return web.json_response({"status": "duplicate", "id": key})
        records.seen_keys.add(key)
        records.accept(
            name, vendor, payload, idempotency_key=key, title=payload["title"], markup=markup
        )
        return web.json_response({"status": "accepted", "id": key})
    records.accept(name, vendor, payload, title=_title(vendor, payload), markup=markup)
    if vendor == "feishu":
        return web.json_response(
            {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}
        )
    return web.json_response({"errcode": 0, "errmsg": "ok"})


def _title(vendor: str, payload: dict[str, Any]) -> str:
    if vendor == "dingtalk":
        return str((payload.get(payload["msgtype"]) or {}).get("title", ""))
    if vendor == "wecom":
        content = str(payload["markdown"]["content"]) if "markdown" in payload else ""
        return content.split("\n", 1)[0].lstrip("# ")
    card = payload.get("card") or {}
    return str(((card.get("header") or {}).get("title") or {}).get("content", ""))


async def notifications(request: web.Request) -> web.Response:
    channel = request.query.get("channel")
    found = [
        n for n in request.app[RECORDS].notifications if channel is None or n["channel"] == channel
    ]
    return web.json_response(found)


async def rejections(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[RECORDS].rejections))


async def faults(request: web.Request) -> web.Response:
    data = await request.json()
    request.app[RECORDS].faults = [Fault(**f) for f in data.get("faults", [])]
    return web.json_response({"ok": True})


async def reset(request: web.Request) -> web.Response:
    request.app[RECORDS].reset()
    return web.json_response({"ok": True})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def build_app(
    config: NotificationSettings, secrets: ChannelSecrets, records: Records
) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[RECORDS] = records
    app[CHANNELS] = known_channels(config, secrets)
    app.router.add_post("/webhook/{token}", _handler("webhook"))
    app.router.add_post("/dingtalk/robot/send", _handler("dingtalk"))
    app.router.add_post("/wecom/cgi-bin/webhook/send", _handler("wecom"))
    app.router.add_post("/feishu/open-apis/bot/v2/hook/{token}", _handler("feishu"))
    app.router.add_get("/admin/notifications", notifications)
    app.router.add_get("/admin/rejections", rejections)
    app.router.add_post("/admin/faults", faults)
    app.router.add_post("/admin/reset", reset)
    app.router.add_get("/health", health)
    wecom_app.add_routes(app, config, secrets, records)
    dingtalk_app.add_routes(app, config, secrets, records)
    feishu_app.add_routes(app, config, secrets, records)
    return app
