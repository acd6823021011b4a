"""Pure logic of the notification messages: texts by kind and language. The same messages
against the real receivers: tests/test_notify.py; what a failed send means:
tests/test_notify_phases.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

import pytest

from activities.notify import feishu
from activities.notify.layout import markdown
from activities.notify.texts import TEXTS, headline_kind, render
from riskflow.models import RiskLevel
from riskflow.notifications import NotificationKind, NotificationRequest
from riskflow.sites import Language

CONSOLE = "https://console.example.com/incidents/inc-1"


def request(**extra: Any) -> NotificationRequest:
    fields: dict[str, Any] = {
        "idempotency_key": "inc-1:L0:ops",
        "channel": "ops",
        "kind": "opened",
        "incident_id": "inc-1",
        "site_id": "plant-a",
        "site_name": "Plant A",
        "camera_id": "cam1",
        "severity": RiskLevel.CRITICAL,
        "state": "notified",
        "situation": "fall",
        "summary": "A person is lying on the floor near the press.",
        "hazards": ["fall"],
        "recommended_actions": ["send a first aider"],
        "opened_at": datetime(2026, 11, 30, 4, 0, tzinfo=UTC),
        "console_url": CONSOLE,
    }
    return NotificationRequest.model_validate({**fields, **extra})


# -- titles and first lines by kind, in the site's language --------------------------------

KINDS: list[dict[str, Any]] = [
    {"kind": "opened"},
    {"kind": "escalated", "escalation_level": 2},
    {
        "kind": "escalated",
        "escalation_level": 0,
    },  # an upgrade of an acknowledged incident
    {"kind": "reminder", "escalation_level": 1},
    {"kind": "summary", "escalation_level": 1},
    {"kind": "resolved", "state": "resolved"},
    {"kind": "dismissed", "state": "dismissed"},
]


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_every_kind_has_its_own_title_and_first_line(language: Language) -> None:
    messages = [render(request(language=language, **kind)) for kind in KINDS]
    titles = [m.title(str) for m in messages]
    leads = [m.lead for m in messages]
    assert len(set(titles)) == len(KINDS) and len(set(leads)) == len(KINDS), titles
    assert all("Plant A" in t and "cam1" in t for t in titles)
    assert "level 2" in titles[1] or "第 2 级" in titles[1]
    if language == "zh-CN":  # no English word of riskflow's in a Chinese message
        english = {"incident", "risk", "Resolved", "Escalated", "camera", "Severity"}
        for m in messages:
            text = "\n".join([m.title(str), m.lead, *(label for label, _ in m.fields)])
            assert not any(word in text for word in english), text


@pytest.mark.parametrize("language", list(get_args(Language)))
def test_every_notification_kind_has_words_in_every_language(
    language: Language,
) -> None:
    for kind in get_args(NotificationKind):
        assert f"title:{kind}" in TEXTS[language] and f"lead:{kind}" in TEXTS[language]
    assert set(TEXTS[language]) == set(TEXTS["en"])


def test_the_request_title_does_not_replace_the_kinds() -> None:
    """Workflows of the previous release still send an English `title`: it is not shown."""
    message = render(request(kind="resolved", title="fall on camera cam1", language="zh-CN"))
    assert message.title(str).startswith("已解除") and "on camera" not in message.title(str)


def test_an_escalation_at_level_zero_is_titled_as_a_raised_severity() -> None:
    assert headline_kind(request(kind="escalated", escalation_level=0)) == "upgraded"
    assert headline_kind(request(kind="escalated", escalation_level=1)) == "escalated"
    assert (
        render(request(kind="escalated", escalation_level=0))
        .title(str)
        .startswith("Severity raised to critical")
    )


@pytest.mark.parametrize("kind", ["resolved", "dismissed"])
def test_a_closing_message_offers_no_acknowledgement(kind: NotificationKind) -> None:
    message = render(request(kind=kind, language="zh-CN"))
    assert [(link.label, link.url) for link in message.links] == [("查看事件", CONSOLE)]
    text = markdown(message, str)
    assert "确认处理" not in text and "?action=" not in text
    opened = render(request())
    assert [link.url for link in opened.links] == [
        f"{CONSOLE}?action=ack",
        f"{CONSOLE}?action=dismiss",
    ]


def test_feishu_colours_a_resolution_green_and_a_dismissal_grey() -> None:
    for kind, colour in (
        ("opened", "red"),
        ("resolved", "green"),
        ("dismissed", "grey"),
    ):
        card = feishu.card(request(kind=kind), render(request(kind=kind)))
        assert card["header"]["template"] == colour
