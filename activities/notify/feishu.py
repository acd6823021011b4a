"""Feishu / Lark custom bot (自定义机器人), interactive card.

Format (https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot and
https://open.feishu.cn/document/feishu-cards/quick-start/send-message-cards-with-custom-bot):
POST JSON `{"msg_type": "interactive", "card": {...}}` to
`https://open.feishu.cn/open-apis/bot/v2/hook/<token>`. Signing ("签名校验"): `timestamp`
(seconds, within an hour of Feishu's clock) and `sign` in the body, where sign =
base64(HMAC-SHA256 keyed with `"{timestamp}\\n{secret}"` over an empty message). A custom
bot's card buttons can only open links: Acknowledge and False alarm open the console (a closing
message has one button, to the incident's page). The header's colour follows the severity, and
is green for a resolution and grey for a dismissal. The answer is
`{"code": 0, "msg": "success", "data": {}}`; a non-zero code is an error: 11232 (frequency
limited: 100 a minute, 5 a second per bot) and 99991400 (the Open Platform's "request trigger
frequency limit", also answered with HTTP 400 or 429 and `x-ogw-ratelimit-reset`,
https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control) are retried, 9499
(bad request), 19001 (invalid token), 19021 (signature or timestamp), 19022 (IP not allowed),
19024 (keyword missing) are not.

Markup (https://open.feishu.cn/document/uAjLw4CM/ukzMukzMukzM/feishu-cards/card-components/
content-components/rich-text, the `lark_md` text): bold and italic `*`, strikethrough `~~`,
links `[text](url)` and `<a href>`, `<at id=all></at>` (mentions everyone), `<font color>`,
`<text_tag>`, `<link>`, images `![hover](img_key)`, headings, quotes and code. `NEUTRAL`
replaces the characters that open these in untrusted text; the header is `plain_text`. Size: the
request body at most 20 KB, counted in UTF-8 bytes of the JSON sent (signature included); the
free text is cut, never the fields or the buttons.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from activities.notify import errors
from activities.notify.http import HttpRequest, Vendor, code_of, json_body
from activities.notify.layout import markdown_link, plain_lines
from activities.notify.markup import Neutraliser, fit
from activities.notify.texts import Link, Message
from riskflow.contracts.notifications import NotificationRequest
from riskflow.levels import RiskLevel

RATE_CODES = frozenset({11232, 99991400})
CONFIG_CODES = frozenset({9499, 19001, 19002, 19021, 19022, 19024})
MAX_BODY_BYTES = 20_000
NEUTRAL = Neutraliser("\\`*~#>[]<&")
CLOSING_TEMPLATES = {"resolved": "green", "dismissed": "grey"}
TEMPLATES = {
    RiskLevel.CRITICAL: "red",
    RiskLevel.HIGH: "orange",
    RiskLevel.MEDIUM: "yellow",
    RiskLevel.LOW: "blue",
    RiskLevel.NONE: "grey",
}


def sign(secret: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(key="{timestamp}\\n{secret}", message=b""))."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def _button(link: Link) -> dict[str, Any]:
    return {
        "tag": "button",
        "text": {"tag": "plain_text", "content": link.label},
        "type": link.style,
        "url": link.url,
    }


def card(request: NotificationRequest, message: Message) -> dict[str, Any]:
    """The interactive card: a coloured header, the text as lark_md, and the link buttons."""
    body = "\n".join(plain_lines(message, NEUTRAL, links=False, link=markdown_link))
    elements: list[dict[str, Any]] = [{"tag": "div", "text": {"tag": "lark_md", "content": body}}]
    if message.links:
        elements.append({"tag": "action", "actions": [_button(link) for link in message.links]})
    template = CLOSING_TEMPLATES.get(message.kind) or TEMPLATES.get(request.severity, "grey")
    return {
        "config": {"wide_screen_mode": True},
        "header": {
            "title": {"tag": "plain_text", "content": message.title(NEUTRAL)},
            "template": template,
        },
        "elements": elements,
    }


def build(
    request: NotificationRequest, message: Message, url: str, secret: str | None, now: float
) -> HttpRequest:
    signed: dict[str, str] = {}
    if secret is not None:
        timestamp = str(int(now))
        signed = {"timestamp": timestamp, "sign": sign(secret, timestamp)}

    def body(m: Message) -> bytes:
        return json_body({**signed, "msg_type": "interactive", "card": card(request, m)})

    return HttpRequest(url=url, body=body(fit(message, lambda m: len(body(m)), MAX_BODY_BYTES)))


def check(answer: Any) -> str:
    field = "code" if isinstance(answer, dict) and "code" in answer else "StatusCode"
    code, message = code_of(answer, field)
    if code != 0:
        raise errors.vendor_code("Feishu", code, message, RATE_CODES, CONFIG_CODES)
    return message or "success"


FEISHU = Vendor("feishu", build, check, NEUTRAL)
