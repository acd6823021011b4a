"""The WeCom app's incident card: a `template_card` of type `button_interaction`
(developer.work.weixin.qq.com/document/path/90236, "模板卡片消息", 按钮交互型), and how it
changes when somebody acts on it (document/path/94888, update_template_card).

The card: the title and lead, the summary (what the detector saw while the model has not
answered), up to six fields (`horizontal_content_list`), the console link as the card's
action when a console is configured, a choice of arrival time (`button_selection`) and the
buttons Claim, On my way, False alarm and Resolved, each keyed `riskflow.contracts.
card_actions.ButtonKey`. Template cards are plain text: nothing in them is markup, so model
text needs no escaping, only control and format characters removed (`plain`); every text is
cut to the length WeCom documents for it. A message
that closes an incident has nothing to answer: it goes as markdown (`activities.notify.wecom`).

After a click: the card everyone sees says who did what ("认领: 王工 14:03, 预计 5 分钟到场"),
and keeps only the buttons still meaningful (after a claim: False alarm and Resolved; after a
close: none, the buttons replaced by the line).
"""

from __future__ import annotations

import hashlib
from typing import Any

from activities.notify.cards import CLAIMED_ACTIONS, LABELS, OPEN_ACTIONS, lasting_fields, plain
from activities.notify.texts import Message, clip
from activities.notify.wecom import content
from riskflow.config.channels import WeComAppChannel
from riskflow.config.sites import Language
from riskflow.contracts.card_actions import (
    ETA_MINUTES,
    ETA_QUESTION,
    REASONS,
    ButtonKey,
    CardAction,
)

# Lengths WeCom documents for template_card texts (建议不超过 N 个字).
TITLE, DESC, SUB_TITLE, KEYNAME, VALUE, BUTTON = 36, 44, 112, 5, 30, 10
MAX_FIELDS, DUPLICATE_CHECK_SECONDS = 6, 4 * 3600

_STYLE: dict[CardAction, int] = {"claim": 1, "on_my_way": 1, "false_alarm": 2, "resolve": 3}


def task_id(idempotency_key: str) -> str:
    """The card's `task_id` ([0-9A-Za-z_-@], unique per app for ever): one per message."""
    return "rf-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:48]


def recipients(channel: WeComAppChannel) -> dict[str, str]:
    found = {"touser": channel.to_users, "toparty": channel.to_parties, "totag": channel.to_tags}
    return {k: "|".join(v) for k, v in found.items() if v}


def buttons(
    incident_id: str, language: Language, actions: tuple[CardAction, ...]
) -> list[dict[str, Any]]:
    t = LABELS[language]
    return [
        {
            "text": clip(t[a], BUTTON),
            "style": _STYLE[a],
            "key": ButtonKey(a, incident_id).encode(),
        }
        for a in actions
    ]


def card(
    message: Message, incident_id: str, language: Language, task: str, console_url: str
) -> dict[str, Any]:
    """The `template_card` of an incident message still open to answers."""
    t = LABELS[language]
    title = clip(message.title(plain), TITLE)
    body: dict[str, Any] = {
        "card_type": "button_interaction",
        "source": {"desc": "riskflow"},
        "main_title": {"title": title, "desc": clip(message.lead, DESC)},
        "task_id": task,
        "horizontal_content_list": [
            {"keyname": clip(label, KEYNAME), "value": clip(plain(value), VALUE)}
            for label, value in lasting_fields(message, language)[:MAX_FIELDS]
        ],
        "button_selection": {
            "question_key": ETA_QUESTION,
            "title": t["eta"],
            "option_list": [{"id": str(n), "text": t["minutes"].format(n=n)} for n in ETA_MINUTES],
            "selected_id": str(ETA_MINUTES[0]),
        },
        "button_list": buttons(incident_id, language, OPEN_ACTIONS),
    }
    if message.summary:
        body["sub_title_text"] = clip(plain(message.summary), SUB_TITLE)
    if console_url:
        body["card_action"] = {"type": 1, "url": console_url}
    return body


def message(
    channel: WeComAppChannel,
    message: Message,
    incident_id: str,
    language: Language,
    idempotency_key: str,
    console_url: str,
) -> dict[str, Any]:
    """The `message/send` body: a card, or markdown for a message that closes an incident."""
    head: dict[str, Any] = {**recipients(channel), "agentid": channel.agent_id}
    head |= {"enable_duplicate_check": 1, "duplicate_check_interval": DUPLICATE_CHECK_SECONDS}
    if message.closing:
        return head | {"msgtype": "markdown", "markdown": {"content": content(message)}}
    task = task_id(idempotency_key)
    body = card(message, incident_id, language, task, console_url)
    return head | {"msgtype": "template_card", "template_card": body}


def answered_card(
    sent: dict[str, Any], line: str, incident_id: str, language: Language
) -> dict[str, Any]:
    """`sent` (a card as `card` made it) once claimed: `line` under the title and only the
    buttons still meaningful (an incident closed from the card gets `button.replace_name`
    instead: no buttons at all)."""
    updated = dict(sent)
    updated["main_title"] = {**sent["main_title"], "desc": clip(line, DESC)}
    updated.pop("button_selection", None)
    updated["button_list"] = buttons(incident_id, language, CLAIMED_ACTIONS)
    return updated


def reasons_card(
    sent: dict[str, Any] | None, task: str, incident_id: str, language: Language
) -> dict[str, Any]:
    """The presser's card after False alarm: the question and one button per reason (the
    card as `card` made it, else a bare one of the same task id)."""
    t = LABELS[language]
    base: dict[str, Any] = dict(sent) if sent is not None else {"card_type": "button_interaction"}
    title = (sent or {}).get("main_title", {}).get("title") or t["why"]
    base |= {"task_id": task, "main_title": {"title": title, "desc": t["why"]}}
    base.pop("button_selection", None)
    base["button_list"] = [
        {
            "text": clip(t[f"reason:{r}"], BUTTON),
            "style": _STYLE["false_alarm"],
            "key": ButtonKey("false_alarm", incident_id, r).encode(),
        }
        for r in REASONS
    ]
    return base
