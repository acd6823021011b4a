"""WeCom (企业微信) group robot.

Format (https://developer.work.weixin.qq.com/document/path/91770): POST JSON
`{"msgtype": "markdown", "markdown": {"content": ...}}` to
`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`; the `key` is the credential, there
is no signature. The answer is HTTP 200 `{"errcode": 0, "errmsg": "ok"}`; a non-zero errcode
is an error: 45009 (over 20 messages a minute) and -1 (system busy) are retried, 93000 (invalid
webhook URL), 40008 (message type), 40058 (parameter, e.g. "markdown.content exceed max length
4096"), 44004 (empty content) are not.

Markup (same page, "markdown类型"): headings `#`, bold `**`, links `[text](url)`, inline code
`` ` ``, quotes `>`, `<font color="info|comment|warning">`, and `<@userid>`, which mentions a
member from the content itself. `NEUTRAL` replaces the characters that open these in untrusted
text. Size: `content` at most 4096 bytes of UTF-8 ("最长不超过4096个字节,必须是utf8编码"),
counted in bytes; the free text is cut, never the fields or the console links.
"""

from __future__ import annotations

from typing import Any

from activities.notify import errors
from activities.notify.http import HttpRequest, Vendor, code_of, json_body
from activities.notify.layout import markdown
from activities.notify.markup import Neutraliser, fit, utf8_size
from activities.notify.texts import Message
from riskflow.contracts.notifications import NotificationRequest

RATE_CODES = frozenset({45009, 45033})
CONFIG_CODES = frozenset({93000, 93004, 40008, 40058, 44004, 40001, 45002})
MAX_CONTENT_BYTES = 4096
NEUTRAL = Neutraliser("\\`*#>[]<&")


def content(message: Message) -> str:
    return markdown(
        fit(message, lambda m: utf8_size(markdown(m, NEUTRAL)), MAX_CONTENT_BYTES), NEUTRAL
    )


def build(
    request: NotificationRequest, message: Message, url: str, secret: str | None, now: float
) -> HttpRequest:
    payload = {"msgtype": "markdown", "markdown": {"content": content(message)}}
    return HttpRequest(url=url, body=json_body(payload))


def check(answer: Any) -> str:
    code, message = code_of(answer, "errcode")
    if code != 0:
        raise errors.vendor_code("WeCom", code, message, RATE_CODES, CONFIG_CODES)
    return message or "ok"


WECOM = Vendor("wecom", build, check, NEUTRAL)
