"""DingTalk custom robot (自定义机器人).

Format (https://open.dingtalk.com/document/robots/custom-robot-access and
https://open.dingtalk.com/document/orgapp/custom-robots-send-group-messages): POST JSON
`{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}}` to
`https://oapi.dingtalk.com/robot/send?access_token=...`. Signing ("加签",
https://open.dingtalk.com/document/robots/customize-robot-security-settings): add query
parameters `timestamp` (milliseconds) and `sign` = URL-encoded base64 of HMAC-SHA256 keyed
with the secret over `"{timestamp}\\n{secret}"`; DingTalk refuses timestamps more than an
hour off. The answer is HTTP 200 `{"errcode": 0, "errmsg": "ok"}`; a non-zero errcode is an
error: 130101/410100 (sending too fast: 20 messages a minute per robot, after which the robot is
blocked for 10 minutes, so the retry waits that long) are retried, the codes of a wrong token,
signature, keyword, IP or message, of a body over 20000 bytes (460101, "body 大小不合法",
101002 "message is too long") and of a used-up quota (90030 "webhook over limit") are not.

Markup (https://open.dingtalk.com/document/orgapp/message-type, "markdown类型"): headings `#`,
quotes `>`, bold and italic `*`, links `[text](url)`, images `![](url)`, lists, and the `<font>`
tag clients render; `@<mobile>` in the text mentions a member listed in `at.atMobiles` (riskflow
sends no `at`). `NEUTRAL` replaces the characters that open these in untrusted text. Size: the
whole body at most 20000 bytes (errcode 460101), counted in UTF-8 bytes; the free text is cut.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import quote_plus

from activities.notify import errors
from activities.notify.http import HttpRequest, Vendor, code_of, json_body
from activities.notify.layout import markdown
from activities.notify.limits import DINGTALK_BLOCK_SECONDS
from activities.notify.markup import Neutraliser, fit
from activities.notify.texts import Message
from riskflow.contracts.notifications import NotificationRequest

RATE_CODES = frozenset({130101, 410100})
BLOCKED_SECONDS = DINGTALK_BLOCK_SECONDS  # over 20 a minute: "限流10分钟"
# 300001/400101 token does not exist, 310000 sign/keyword/IP check failed, 400102 robot
# stopped, 400013 group dissolved, 40035 missing parameter, 43004 bad Content-Type, 40044 and
# 400105 unsupported message type, 460101/101002 too long, 90030 quota used up.
CONFIG_CODES = frozenset(
    {300001, 310000, 400013, 400101, 400102, 40035, 43004, 40044, 400105, 460101, 101002, 90030}
)
MAX_BODY_BYTES = 20_000
NEUTRAL = Neutraliser("\\`*#>[]<&@")


def sign(secret: str, timestamp_ms: str) -> str:
    """base64(HMAC-SHA256(key=secret, "{timestamp}\\n{secret}")), not yet URL-encoded."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def body(message: Message) -> bytes:
    title = message.title(NEUTRAL)
    return json_body(
        {"msgtype": "markdown", "markdown": {"title": title, "text": markdown(message, NEUTRAL)}}
    )


def build(
    request: NotificationRequest, message: Message, url: str, secret: str | None, now: float
) -> HttpRequest:
    payload = body(fit(message, lambda m: len(body(m)), MAX_BODY_BYTES))
    if secret is not None:
        timestamp = str(int(now * 1000))
        separator = "&" if "?" in url else "?"
        url = f"{url}{separator}timestamp={timestamp}&sign={quote_plus(sign(secret, timestamp))}"
    return HttpRequest(url=url, body=payload)


def check(answer: Any) -> str:
    code, message = code_of(answer, "errcode")
    if code != 0:
        raise errors.vendor_code(
            "DingTalk", code, message, RATE_CODES, CONFIG_CODES, BLOCKED_SECONDS
        )
    return message or "ok"


DINGTALK = Vendor("dingtalk", build, check, NEUTRAL)
