"""Pure logic of the notification messages: texts by kind and language, untrusted text made
inert for each vendor, messages fitted to a vendor's limit. The same messages against the real
receivers: tests/test_notify.py; what a failed send means: tests/test_notify_phases.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.notify import dingtalk, feishu, mail, markup, webhook, wecom
from activities.notify.layout import markdown, plain_lines
from activities.notify.texts import TEXTS, Message, headline_kind, render
from devstack.receivers.markup import active_markup
from riskflow.config.channels import EmailChannel
from riskflow.config.sites import Language
from riskflow.contracts.notifications import NotificationKind, NotificationRequest
from riskflow.levels import RiskLevel

CONSOLE = "https://console.example.com/incidents/inc-1"
HOSTILE = [
    "<at id=all></at>",
    '<at user_id="all">所有人</at>',
    "<@all> <@zhangsan>",
    "@all @13800000000",
    "[点击确认](http://evil.example.com/ack)",
    "![x](https://evil.example.com/x.png)",
    '<font color="warning">已解除</font> <font color=#ff0000>red</font>',
    '<a href="https://evil.example.com">here</a> <link url="https://evil.example.com">x</link>',
    "<text_tag color='red'>OK</text_tag>",
    "visit www.evil.example.com or evil.example.cn or https://evil.example.com/path",
    "line one\n### Resolved\n> quoted\n- [x](dingtalk://dingtalkclient/page/link?url=x)",
    "\u202eevil\u200b text\r\nBcc: everyone@example.com",
    "&lt;at id=all&gt;&lt;/at&gt; `code` **bold** ~~strike~~ | a | b |",
]
VENDORS = {
    "dingtalk": dingtalk.NEUTRAL,
    "wecom": wecom.NEUTRAL,
    "feishu": feishu.NEUTRAL,
    "webhook": webhook.NEUTRAL,
    "email": markup.PLAIN,
}


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
    text = markdown(message, wecom.NEUTRAL)
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


# -- untrusted text made inert, per vendor ---------------------------------------------------


@pytest.mark.parametrize("vendor", list(VENDORS))
@pytest.mark.parametrize("text", HOSTILE)
def test_untrusted_text_activates_no_markup(vendor: str, text: str) -> None:
    neutral = VENDORS[vendor]
    out = neutral(text)
    assert "\n" not in out and "\r" not in out and "\u202e" not in out and "\u200b" not in out
    assert "://" not in out and "www." not in out and ".example.com" not in out
    for char in neutral.specials:
        assert char not in out, (char, out)
    found = active_markup(vendor, _payload(vendor, out))
    assert found == {"mentions": [], "links": [], "images": [], "colours": []}, out


def _payload(vendor: str, text: str) -> dict[str, Any]:
    if vendor == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": "t", "text": text}}
    if vendor == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": text}}
    if vendor == "feishu":
        return {"card": {"elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text}}]}}
    if vendor == "webhook":
        return {"title": "t", "text": text}
    return {"subject": "s", "text": text}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_no_text_activates_markup_in_any_vendor(text: str) -> None:
    for vendor, neutral in VENDORS.items():
        found = active_markup(vendor, _payload(vendor, neutral(text)))
        assert found == {"mentions": [], "links": [], "images": [], "colours": []}, (
            vendor,
            text,
        )


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("Asia/Shanghai", "2026-11-30 12:00:00 UTC+08:00"),
        ("UTC", "2026-11-30 04:00:00 UTC+00:00"),
        ("America/St_Johns", "2026-11-30 00:30:00 UTC-03:30"),
        ("Not/AZone", "2026-11-30 04:00:00 UTC+00:00"),
    ],
)
def test_times_are_on_the_sites_wall_clock(zone: str, shown: str) -> None:
    fields = dict(render(request(language="zh-CN", timezone=zone)).fields)
    assert fields["发生时间"] == shown


def test_what_the_detector_saw_is_in_the_sites_language() -> None:
    pending = {"summary": "", "assessment_pending": True, "detected": "fall: 1 detection(s)"}
    chinese = render(request(language="zh-CN", detected_count=1, **pending))
    assert chinese.summary == "评估进行中。检测到:fall 1 处。"
    english = render(request(detected_count=2, **pending))
    assert english.summary == "Assessment pending. The detector saw: fall: 2 detection(s)."
    # a request from a run before `detected_count` keeps the workflow's own words
    assert "fall: 1 detection(s)" in render(request(language="zh-CN", **pending)).summary


def test_chinese_text_and_plain_words_read_the_same() -> None:
    text = "一名工人倒在压力机旁,需要立即处理。Forklift near dock 3, 2.5 m away"
    for neutral in VENDORS.values():
        assert neutral(text) == text


@pytest.mark.parametrize("vendor", ["dingtalk", "wecom", "feishu", "webhook", "email"])
def test_a_hostile_request_leaves_only_the_console_links(vendor: str) -> None:
    hostile = " ".join(HOSTILE)
    req = request(
        summary=hostile,
        hazards=HOSTILE,
        recommended_actions=HOSTILE,
        camera_id="cam1 <at id=all></at> [x](http://evil.example.com)",
        site_name="Plant <@all>",
        situation="fall\n### Resolved",
    )
    payload = json.loads(_build(vendor, req))
    found = active_markup(vendor, payload)
    assert found["mentions"] == found["images"] == found["colours"] == [], found
    assert set(found["links"]) == {f"{CONSOLE}?action=ack", f"{CONSOLE}?action=dismiss"}


def _build(vendor: str, req: NotificationRequest) -> bytes:
    message = render(req)
    if vendor == "email":
        composed = mail.compose(req, message, EmailChannel(type="email", recipients=["a@b.cn"]))
        body = composed.get_content()
        return json.dumps({"subject": str(composed["Subject"]), "text": body}).encode()
    module = {
        "dingtalk": dingtalk,
        "wecom": wecom,
        "feishu": feishu,
        "webhook": webhook,
    }[vendor]
    built = module.build(req, message, "http://receiver/x", "secret", 1_700_000_000.0)
    body_bytes: bytes = built.body
    return body_bytes


# -- fitted to the vendor's limit: the free text is cut, fields and links kept -----------------

LONG = "一名工人倒在压力机旁,周围有液压油泄漏,需要立即停机并派急救员到场。" * 300


@pytest.mark.parametrize(
    ("vendor", "limit"),
    [("wecom", 4096), ("dingtalk", 20_000), ("feishu", 20_000)],
)
def test_long_chinese_text_is_cut_and_fields_and_links_survive(vendor: str, limit: int) -> None:
    req = request(
        language="zh-CN",
        summary=LONG,
        hazards=[LONG[:500]] * 30,
        recommended_actions=[LONG[:300]] * 30,
    )
    body = _build(vendor, req)
    payload = json.loads(body)
    text = wecom.content(render(req)) if vendor == "wecom" else body.decode()
    size = len(text.encode()) if vendor == "wecom" else len(body)
    assert size <= limit
    assert size > limit * 0.9  # cut, not emptied
    for label, value in render(req).fields:
        assert label in text and value in text
    assert f"{CONSOLE}?action=ack" in text and f"{CONSOLE}?action=dismiss" in text
    assert "…" in text
    assert payload


def test_fit_counts_characters_where_the_vendor_counts_characters() -> None:
    message = render(request(language="zh-CN", summary=LONG))

    def chars(m: Message) -> int:
        return len(markdown(m, wecom.NEUTRAL))

    fitted = markup.fit(message, chars, 1000)
    assert 950 < chars(fitted) <= 1000  # in bytes the same text would be about 3000
    assert markup.fit(message, chars, 10**6) is message  # fits: unchanged


def test_cut_keeps_the_order_summary_hazards_actions() -> None:
    message = render(request(summary="abcdef", hazards=["123", "456"], recommended_actions=["x"]))
    assert message.cut(100) == message
    cut = message.cut(8)
    assert (cut.summary, cut.hazards, cut.actions) == ("abcdef", ("12…", "…"), ("…",))
    empty = message.cut(0)
    assert (empty.summary, empty.hazards, empty.actions) == ("…", ("…",), ("…",))


def test_untrusted_labels_are_clipped_in_titles_and_fields() -> None:
    message = render(request(camera_id="c" * 500, incident_id="i" * 500, site_name="s" * 500))
    assert len(message.title(str)) < 250
    assert all(len(value) <= 128 for _, value in message.fields)


def test_e_mail_subject_is_one_line_whatever_the_camera_label() -> None:
    req = request(camera_id="cam1\r\nBcc: everyone@example.com", site_name="A\nB")
    composed = mail.compose(req, render(req), EmailChannel(type="email", recipients=["a@b.cn"]))
    subject = str(composed["Subject"])
    assert "\n" not in subject and "\r" not in subject and composed["Bcc"] is None
    assert plain_lines(render(req), markup.PLAIN)[0] == "A new incident needs attention."
