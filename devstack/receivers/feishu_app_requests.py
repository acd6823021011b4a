"""The Feishu app simulator's checks of the request bodies of `POST /open-apis/im/v1/messages`
and `PATCH /open-apis/im/v1/messages/:message_id`, and Feishu's error answer. Pure: a body in,
a `Send`/`Checked` or `Invalid` out. Sources: open.feishu.cn/document/server-docs/im-v1/
message/create and message-card/patch (mirrored in riba2534/feishu-open-docs@3ab55dfc
`im-v1/message/create.md`, `im-v1/message-card/patch.md`).

- Field checks by the API gateway: a missing or mistyped field (`receive_id_type` absent or not
  one of the five, `receive_id`/`msg_type`/`content` not strings, `uuid` over 50 characters):
  HTTP 400 `99992402` "field validation failed" with `field_violations` (the shape users report
  for a missing `receive_id_type`; the docs list no code for these).
- `msg_type` other than "interactive": the simulator models cards only (230001).
- The card inside `content`: `feishu_app_card.parse_card` (230025, 230099).
An error is `{"code", "msg", "error": {"log_id", "troubleshooter"}}`, HTTP 400 unless said.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from devstack.receivers.feishu_app_card import Checked, Invalid, parse_card

RECEIVE_ID_TYPES = ("chat_id", "open_id", "union_id", "user_id", "email")
MOST_UUID_CHARS = 50


def error_answer(exc: Invalid) -> web.Response:
    """Feishu's error body: `code`, `msg`, and `error.log_id` / `troubleshooter`."""
    log_id = time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(11).upper()
    body: dict[str, Any] = {"code": exc.code, "msg": exc.message}
    body["error"] = {
        "log_id": log_id,
        "troubleshooter": "排查建议查看(Troubleshooting suggestions): "
        f"https://open.feishu.cn/search?from=openapi&log_id={log_id}&code={exc.code}",
    }
    if exc.field is not None:
        body["error"]["field_violations"] = [exc.field]
    return web.json_response(body, status=exc.status)


def invalid_param(ext: str) -> Invalid:
    """230001 with its `ext`, as the create and patch pages name it."""
    return Invalid(230001, f"Your request contains an invalid request parameter, ext={ext}")


def violation(field: str, description: str) -> Invalid:
    found = {"field": field, "description": description}
    return Invalid(99992402, "field validation failed", field=found)


@dataclass(frozen=True)
class Send:
    receive_id_type: str
    receive_id: str
    uuid: str | None
    checked: Checked
    body: dict[str, Any]


def parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid(20001, "invalid request: the body is not JSON") from None
    if not isinstance(body, dict):
        raise Invalid(20001, "invalid request: the body is not a JSON object")
    return body


def _string(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise violation(key, f"{key} is required and must be a string")
    return value


def check_send(raw: bytes, receive_id_type: str | None) -> Send:
    """A send body with its `receive_id_type` query parameter, or `Invalid`."""
    if receive_id_type is None:
        raise violation("receive_id_type", "receive_id_type is required")
    if receive_id_type not in RECEIVE_ID_TYPES:
        raise violation("receive_id_type", f"receive_id_type must be one of {RECEIVE_ID_TYPES}")
    body = parse(raw)
    receive_id = str(_string(body, "receive_id"))
    msg_type = _string(body, "msg_type")
    content = str(_string(body, "content"))
    uuid = _string(body, "uuid", required=False)
    if uuid is not None and len(uuid) > MOST_UUID_CHARS:
        raise violation("uuid", f"uuid is longer than {MOST_UUID_CHARS} characters")
    if msg_type != "interactive":
        raise invalid_param(f"msg_type {msg_type!r}: the simulator models interactive only")
    return Send(receive_id_type, receive_id, uuid or None, parse_card(content), body)


def check_patch(raw: bytes) -> Checked:
    """A PATCH body `{"content": card string}`: the new card, or `Invalid`."""
    return parse_card(str(_string(parse(raw), "content")))
