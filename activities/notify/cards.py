"""What every chat app's incident card says, whichever vendor draws it
(`activities.notify.wecom_card`, `feishu_card`, `dingtalk_card`): the buttons' labels, the
choices of arrival time and of a false alarm's reason, the line a card shows once somebody
acted ("认领: 王工 14:03, 预计 5 分钟到场"), in each site language; which actions a card
still offers; how long a card is kept for its buttons.
"""

from __future__ import annotations

import unicodedata

from activities.notify.texts import TEXTS, Message
from riskflow.config.sites import Language
from riskflow.contracts.card_actions import ETA_MINUTES, CardAction, FalseAlarmReason

CARD_TTL_SECONDS = 72 * 3600  # a card's buttons answer for 72 hours: it is kept that long
OPEN_ACTIONS: tuple[CardAction, ...] = ("claim", "on_my_way", "false_alarm", "resolve")
CLAIMED_ACTIONS: tuple[CardAction, ...] = ("false_alarm", "resolve")

LABELS: dict[Language, dict[str, str]] = {
    "en": {
        "claim": "Claim",
        "on_my_way": "On my way",
        "false_alarm": "False alarm",
        "resolve": "Resolved",
        "eta": "Arriving in",
        "minutes": "{n} min",
        "claimed": "Claimed: {who} {at}",
        "coming": "{who} on the way {at}, about {n} min",
        "dismissed": "False alarm: {who} {at}",
        "resolved": "Resolved: {who} {at}",
        "why": "Why a false alarm?",
        "reason:detector": "Detector wrong",
        "reason:drill": "Drill or test",
        "reason:work": "Planned work",
        "reason:other": "Other",
        "dismissed_because": "False alarm ({reason}): {who} {at}",
    },
    "zh-CN": {
        "claim": "认领",
        "on_my_way": "马上到",
        "false_alarm": "误报",
        "resolve": "已解除",
        "eta": "预计到场",
        "minutes": "{n} 分钟",
        "claimed": "认领: {who} {at}",
        "coming": "认领: {who} {at}, 预计 {n} 分钟到场",
        "dismissed": "误报: {who} {at}",
        "resolved": "已解除: {who} {at}",
        "why": "误报原因?",
        "reason:detector": "误检",
        "reason:drill": "演练/测试",
        "reason:work": "已知作业",
        "reason:other": "其他",
        "dismissed_because": "误报({reason}): {who} {at}",
    },
}


def answered_line(
    action: CardAction,
    language: Language,
    who: str,
    at: str,
    eta_minutes: int | None,
    reason: FalseAlarmReason | None = None,
) -> str:
    """What the card says after `action` by `who` at `at` (the site's wall clock, HH:MM)."""
    t = LABELS[language]
    if action == "on_my_way":
        return t["coming"].format(who=who, at=at, n=eta_minutes or ETA_MINUTES[0])
    if action == "false_alarm" and reason is not None:
        return t["dismissed_because"].format(reason=t[f"reason:{reason}"], who=who, at=at)
    name = {"claim": "claimed", "false_alarm": "dismissed", "resolve": "resolved"}[action]
    return t[name].format(who=who, at=at)


def reason_question(language: Language) -> str:
    return LABELS[language]["why"]


def plain(text: str) -> str:
    """`text` without control and format characters (a right-to-left override in a camera
    label or a model's summary would turn the card's line around; zero-width characters
    would hide text)."""
    return "".join(c for c in text if c == "\n" or unicodedata.category(c) not in ("Cc", "Cf"))


def lasting_fields(message: Message, language: Language) -> tuple[tuple[str, str], ...]:
    """The message's fields that stay true once somebody acts on its card: all but its
    state (the card's own line says what happened since)."""
    state = TEXTS[language]["state"]
    return tuple((label, value) for label, value in message.fields if label != state)
