"""The Feishu app's incident card: card JSON 2.0 (open.feishu.cn/document/feishu-cards/
card-json-v2-structure), sent by `activities.notify.feishu_app` and updated in place when
somebody acts on it.

The card: a header coloured by severity (title, and the lead as its subtitle), the summary,
the fields one per line, the line saying who acted (once somebody did), then the actions:
Claim (a button), On my way (a `select_static` of arrival times: picking one is the click),
False alarm (a `select_static` of reasons: picking one is the click, so the reason always comes
with it), Resolved (a button), and the console link when one is configured. Each action's
callback `value` is `{"key": <riskflow.contracts.card_actions.ButtonKey>}`; Feishu sends it
back unchanged with the click, with the picked option beside it (`action.option`). Texts are
`plain_text`: nothing in them is markup, so model text needs no escaping, only control and
format characters removed (`cards.plain`).

The card is shared (`config.update_multi`: JSON 2.0 allows only true), so an update shows
everyone the same card: after a claim, only False alarm and Resolved remain; after a close,
no action at all. A message that closes an incident is a card without actions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from activities.notify.cards import CLAIMED_ACTIONS, LABELS, OPEN_ACTIONS, lasting_fields, plain
from activities.notify.feishu import CLOSING_TEMPLATES, TEMPLATES
from activities.notify.texts import Message, clip
from riskflow.config.sites import Language
from riskflow.contracts.card_actions import ETA_MINUTES, REASONS, ButtonKey, CardAction
from riskflow.levels import RiskLevel

TITLE, SUBTITLE, SUMMARY, FIELD, LINE = 100, 100, 1000, 200, 200
MAX_CONTENT_BYTES = 30_000  # a card's `content`, as sent (im/v1/messages create)
_PLACEHOLDER: dict[Language, dict[CardAction, str]] = {
    "en": {"on_my_way": "On my way: arriving in…", "false_alarm": "False alarm: why?"},
    "zh-CN": {"on_my_way": "马上到 · 预计到场", "false_alarm": "误报 · 原因"},
}
_OPEN = {"en": "Open in riskflow", "zh-CN": "在 riskflow 中查看"}
_CONFIRM: dict[Language, dict[str, str]] = {
    "en": {
        "false_alarm": "Close it as a false alarm?",
        "resolve": "Close it as resolved?",
        "text": "Everyone sees the incident closed, and escalation stops.",
    },
    "zh-CN": {
        "false_alarm": "确认按误报关闭?",
        "resolve": "确认已解除并关闭?",
        "text": "所有人都会看到事件已关闭, 升级通知随之停止。",
    },
}


def uuid(idempotency_key: str, receive_id: str) -> str:
    """The send's `uuid` (at most 50 characters; Feishu sends one message per uuid within an
    hour): one per message and recipient, so a retried activity sends nothing twice."""
    digest = hashlib.sha256(f"{idempotency_key}\n{receive_id}".encode()).hexdigest()
    return "rf-" + digest[:40]


def _text(content: str) -> dict[str, str]:
    return {"tag": "plain_text", "content": content}


def _key(action: CardAction, incident_id: str) -> list[dict[str, Any]]:
    return [{"type": "callback", "value": {"key": ButtonKey(action, incident_id).encode()}}]


def _confirm(action: CardAction, language: Language) -> dict[str, Any]:
    """A confirmation before an action that closes the incident (a mis-tap on a phone must
    not close a real alarm)."""
    t = _CONFIRM[language]
    return {"title": _text(t[action]), "text": _text(t["text"])}


def _action(action: CardAction, incident_id: str, language: Language) -> dict[str, Any]:
    t = LABELS[language]
    if action in ("claim", "resolve"):
        button = {
            "tag": "button",
            "element_id": action,
            "text": _text(t[action]),
            "type": "primary" if action == "claim" else "default",
            "behaviors": _key(action, incident_id),
        }
        return button | ({"confirm": _confirm(action, language)} if action == "resolve" else {})
    if action == "on_my_way":
        options = [(str(n), t["minutes"].format(n=n)) for n in ETA_MINUTES]
    else:
        options = [(r, t[f"reason:{r}"]) for r in REASONS]
    return {
        "tag": "select_static",
        "element_id": action,
        "placeholder": _text(_PLACEHOLDER[language][action]),
        "options": [{"text": _text(label), "value": value} for value, label in options],
        "behaviors": _key(action, incident_id),
    } | ({"confirm": _confirm(action, language)} if action == "false_alarm" else {})


def _row(elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "tag": "column_set",
        "flex_mode": "flow",
        "columns": [
            {"tag": "column", "width": "auto", "elements": [element]} for element in elements
        ],
    }


def card(
    message: Message,
    incident_id: str,
    language: Language,
    severity: RiskLevel,
    console_url: str,
) -> dict[str, Any]:
    """The card of an incident message: open to answers, or without actions when it closes
    the incident."""
    template = CLOSING_TEMPLATES.get(message.kind) or TEMPLATES.get(severity, "grey")
    elements: list[dict[str, Any]] = []
    if message.summary:
        elements.append({"tag": "div", "text": _text(clip(plain(message.summary), SUMMARY))})
    fields = lasting_fields(message, language)
    if fields:
        lines = [f"{label}: {clip(plain(value), FIELD)}" for label, value in fields]
        elements.append({"tag": "div", "element_id": "fields", "text": _text("\n".join(lines))})
    built: dict[str, Any] = {
        "schema": "2.0",
        "config": {"update_multi": True, "summary": {"content": clip(plain(message.lead), 60)}},
        "header": {
            "title": _text(clip(message.title(plain), TITLE)),
            "subtitle": _text(clip(message.lead, SUBTITLE)),
            "template": template,
        },
        "body": {"elements": elements},
    }
    if console_url:
        built["card_link"] = {"url": console_url}
    if not message.closing:
        _set_actions(built, incident_id, language, OPEN_ACTIONS)
    return built


def _set_actions(
    built: dict[str, Any], incident_id: str, language: Language, actions: tuple[CardAction, ...]
) -> None:
    elements = [e for e in built["body"]["elements"] if e.get("element_id") != "actions"]
    row = [_action(a, incident_id, language) for a in actions]
    console = built.get("card_link", {}).get("url")
    if console and actions:
        row.append(
            {
                "tag": "button",
                "element_id": "console",
                "text": _text(_OPEN[language]),
                "type": "default",
                "behaviors": [{"type": "open_url", "default_url": console}],
            }
        )
    if row:
        elements.append({**_row(row), "element_id": "actions"})
    built["body"]["elements"] = elements


def answered(
    sent: dict[str, Any], line: str, incident_id: str, language: Language, closed: bool
) -> dict[str, Any]:
    """`sent` (a card as `card` made it) after somebody acted: `line` ("认领: 王工 14:03")
    above the actions, and only the actions still meaningful (none once `closed`)."""
    actions = () if closed else CLAIMED_ACTIONS
    return redrawn(sent, line, incident_id, language, actions)


def redrawn(
    sent: dict[str, Any],
    line: str,
    incident_id: str,
    language: Language,
    actions: tuple[CardAction, ...],
) -> dict[str, Any]:
    """`sent` with `line` above `actions` (an incident reopened: all of them again)."""
    updated: dict[str, Any] = json.loads(json.dumps(sent))
    elements = [e for e in updated["body"]["elements"] if e.get("element_id") != "status"]
    status = {"tag": "div", "element_id": "status", "text": _text(clip(line, LINE))}
    at = next((i for i, e in enumerate(elements) if e.get("element_id") == "actions"), None)
    elements.insert(len(elements) if at is None else at, status)
    updated["body"]["elements"] = elements
    _set_actions(updated, incident_id, language, actions)
    return updated


def note(title: str, line: str) -> dict[str, Any]:
    """A card without actions that tells one person `line` (why their click changed nothing)."""
    return {
        "schema": "2.0",
        "config": {"update_multi": True},
        "header": {"title": _text(clip(title, TITLE)), "template": "grey"},
        "body": {"elements": [{"tag": "div", "text": _text(clip(line, LINE))}]},
    }


def content(built: dict[str, Any]) -> str:
    """The card as Feishu takes it: a JSON string."""
    return json.dumps(built, ensure_ascii=False, separators=(",", ":"))
