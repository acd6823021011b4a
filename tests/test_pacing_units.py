"""The pure parts of robot pacing: the windows from each vendor's published limits, block
times, what a taken message means, and the digest with its size bound in each vendor's format.
No Redis, no clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.notify.digest import (
    Digest,
    Parked,
    build_digest,
    digest_message,
    incidents_list_url,
    parked_entry,
)
from activities.notify.dingtalk import DINGTALK
from activities.notify.errors import seconds
from activities.notify.feishu import FEISHU
from activities.notify.layout import markdown, markdown_link, plain_lines
from activities.notify.limits import VENDOR_LIMITS, Window, block_seconds, paced_windows
from activities.notify.pacing import InFlight, Lost, Merged, Robot, Taken, taken_outcome
from activities.notify.texts import render
from activities.notify.webhook import WEBHOOK
from activities.notify.wecom import WECOM
from riskflow.contracts.notifications import NotificationRequest
from riskflow.levels import RiskLevel

CONSOLE = "https://console.example.com/incidents"
OPENED = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


# -- windows and blocks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "rate", "margin", "expected"),
    [
        ("dingtalk", None, 0.1, (Window(18, 60.0),)),
        ("dingtalk", None, 0.0, (Window(20, 60.0),)),
        ("dingtalk", 10, 0.1, (Window(10, 60.0),)),  # an override is used as given
        ("wecom", None, 0.1, (Window(18, 60.0),)),
        ("feishu", None, 0.1, (Window(90, 60.0), Window(4, 1.0))),
        ("feishu", 30, 0.1, (Window(30, 60.0), Window(4, 1.0))),  # 5/s stays (less margin)
        ("feishu", None, 0.0, (Window(100, 60.0), Window(5, 1.0))),
        ("dingtalk", None, 0.99, (Window(1, 60.0),)),  # never below one message
        ("webhook", None, 0.1, ()),  # no published limit: not paced
        ("webhook", 5, 0.1, (Window(5, 60.0),)),
    ],
)
def test_paced_windows(
    vendor: str, rate: int | None, margin: float, expected: tuple[Window, ...]
) -> None:
    assert paced_windows(vendor, rate, margin) == expected


def test_published_limits() -> None:
    assert VENDOR_LIMITS["dingtalk"].windows == (Window(20, 60.0),)
    assert VENDOR_LIMITS["wecom"].windows == (Window(20, 60.0),)
    assert VENDOR_LIMITS["feishu"].windows == (Window(100, 60.0), Window(5, 1.0))


@pytest.mark.parametrize(
    ("vendor", "named", "expected"),
    [
        ("dingtalk", None, 600.0),  # throttled for 10 minutes
        ("dingtalk", 60.0, 600.0),
        ("dingtalk", 900.0, 900.0),  # a longer delay the answer names wins
        ("wecom", None, 60.0),
        ("feishu", None, 60.0),  # nothing published: a minute
        ("feishu", 7.0, 7.0),  # or what the answer names
        ("webhook", 7.0, 7.0),  # Retry-After
        ("webhook", None, 60.0),
    ],
)
def test_block_seconds(vendor: str, named: float | None, expected: float) -> None:
    assert block_seconds(vendor, named) == expected


def test_robot_id_is_per_url_and_hides_the_token() -> None:
    url = "https://oapi.dingtalk.com/robot/send?access_token=secret-token"
    assert Robot.id_of(url) == Robot.id_of(url)
    assert Robot.id_of(url) != Robot.id_of(url + "2")
    assert "secret" not in Robot.id_of(url) and "{" not in Robot.id_of(url)


# -- a message a digest took ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "age", "expected"),
    [
        ("sent", 0.0, Merged("merged: d")),
        ("sent", 10_000.0, Merged("merged: d")),
        ("sending", 2.0, InFlight(11.0)),  # the send's own deadline (10 s) and a second
        ("sending", 55.0, InFlight(5.0)),  # ... or when the claim runs out
        ("sending", 59.5, InFlight(1.0)),
        ("sending", 61.0, Lost("merged: d")),  # its sender died: not sent again
        ("unknown", 1.0, Lost("merged: d")),
    ],
)
def test_taken_outcome(state: Any, age: float, expected: object) -> None:
    taken = Taken(state=state, digest="k#1", detail="merged: d", age_seconds=age)
    assert taken_outcome(taken, claim_seconds=60.0, send_seconds=10.0) == expected


# -- the digest ------------------------------------------------------------------------------------


def entry(n: int, severity: RiskLevel = RiskLevel.HIGH, minutes: int = 0, **kw: Any) -> Parked:
    fields: dict[str, Any] = {
        "key": f"inc-{n}:L0:ops",
        "title": f"Incident: {severity.value} risk at {{site}}, camera {{camera}}",
        "title_values": (("site", "Plant A"), ("camera", f"cam{n}")),
        "severity": severity,
        "link": f"{CONSOLE}/inc-{n}",
        "opened_ms": int((OPENED + timedelta(minutes=minutes)).timestamp() * 1000),
    }
    return Parked(**{**fields, **kw})


def lines_of(digest: Digest, neutral: Any = DINGTALK.neutral) -> list[str]:
    """The digest's lines after its title and first line, as markdown."""
    title, blank, lead, blank_too, *lines = markdown(digest.message, neutral).split("\n")
    assert title == f"### {digest.title}" and lead == digest.message.lead
    assert blank == blank_too == ""
    return lines


def test_most_severe_first_then_oldest() -> None:
    entries = [
        entry(1, RiskLevel.MEDIUM, 0),
        entry(2, RiskLevel.CRITICAL, 5),
        entry(3, RiskLevel.CRITICAL, 1),
        entry(4, RiskLevel.HIGH, 0),
    ]
    digest = build_digest(entries, "en", 10_000, CONSOLE, neutral=DINGTALK.neutral)
    assert digest.listed == ("inc-3:L0:ops", "inc-2:L0:ops", "inc-4:L0:ops", "inc-1:L0:ops")
    assert digest.counted == () and digest.severity == RiskLevel.CRITICAL
    assert digest.title == "4 notifications, merged (the robot's rate limit)"
    assert digest.message.kind == "merged"
    lines = lines_of(digest)
    assert lines[0] == (
        f"- **critical** [Incident: critical risk at Plant A, camera cam3]({CONSOLE}/inc-3)"
    )
    assert len(lines) == 4 and "more" not in "\n".join(lines)


def test_what_does_not_fit_is_counted_with_the_console_link() -> None:
    entries = [entry(n, minutes=n) for n in range(40)]
    digest = build_digest(entries, "en", 2_000, CONSOLE, neutral=DINGTALK.neutral)
    assert 0 < len(digest.listed) < 40
    assert set(digest.keys) == {e.key for e in entries} and len(digest.keys) == 40
    assert digest.listed == tuple(f"inc-{n}:L0:ops" for n in range(len(digest.listed)))
    last = lines_of(digest)[-1]
    assert last == f"and {len(digest.counted)} more: [all open incidents]({CONSOLE})"
    text = markdown(digest.message, DINGTALK.neutral)
    assert len(json.dumps(text, ensure_ascii=False).encode()) - 2 <= 2_000


def test_a_tiny_budget_counts_everybody() -> None:
    digest = build_digest([entry(1), entry(2)], "zh-CN", 10, neutral=DINGTALK.neutral)
    assert digest.listed == () and len(digest.counted) == 2
    assert lines_of(digest) == ["以及另外 2 条"] and digest.title.startswith("2 条通知")


@pytest.mark.parametrize("vendor", [DINGTALK, WECOM, FEISHU, WEBHOOK], ids=lambda v: v.name)
def test_untrusted_labels_are_inert_and_the_link_is_real(vendor: Any) -> None:
    """A camera label with markup and a URL: neutralised by the vendor's own NEUTRAL, inside a
    link label it cannot close; the console link itself stays a real URL."""
    camera = "[dock](https://evil.example.com) 3\n### injected <at id=all></at>"
    odd = entry(1, title_values=(("site", "Plant A"), ("camera", camera)))
    digest = build_digest([odd], "en", 10_000, CONSOLE, neutral=vendor.neutral)
    [line] = lines_of(digest, vendor.neutral)
    shown = f"Incident: high risk at Plant A, camera {vendor.neutral(camera)}"
    assert line == f"- **high** [{shown}]({CONSOLE}/inc-1)"
    assert "https://evil" not in line and "[dock]" not in line and "\n" not in line
    assert "<at" not in line
    bare = build_digest([entry(2, link="")], "en", 10_000, neutral=vendor.neutral)
    assert lines_of(bare, vendor.neutral) == [
        "- **high** Incident: high risk at Plant A, camera cam2"
    ]


def test_an_entry_parked_before_titles_had_slots_is_all_untrusted() -> None:
    raw = json.dumps(
        {
            "key": "inc-1:L0:ops",
            "title": "New incident: high risk at [x](https://evil.example.com), camera {c}",
            "severity": "high",
            "link": f"{CONSOLE}/inc-1",
            "opened_ms": 0,
        }
    )
    old = Parked.from_json(raw)
    digest = build_digest([old], "en", 10_000, CONSOLE, neutral=DINGTALK.neutral)
    [line] = lines_of(digest)
    assert "https://evil" not in line and "[x]" not in line and "{c}" in line
    assert line.endswith(f"]({CONSOLE}/inc-1)")


def test_an_empty_digest_is_refused() -> None:
    with pytest.raises(ValueError):
        build_digest([], "en", 1000, neutral=DINGTALK.neutral)


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (f"{CONSOLE}/inc-1", CONSOLE),
        (f"{CONSOLE}/inc-1/", CONSOLE),
        ("https://console.example.com/other/inc-1", ""),
        ("", ""),
    ],
)
def test_incidents_list_url(link: str, expected: str) -> None:
    assert incidents_list_url(link) == expected


def request(n: int, language: str = "zh-CN") -> NotificationRequest:
    return NotificationRequest(
        idempotency_key=f"inc-{n}:L0:ops",
        channel="ops",
        kind="opened",
        incident_id=f"inc-{n}",
        site_id="plant-a",
        site_name="第一工厂",
        camera_id=f"cam{n}",
        severity=RiskLevel.CRITICAL,
        state="notified",
        summary="有人倒地",
        opened_at=OPENED,
        console_url=f"{CONSOLE}/inc-{n}",
        language=language,  # type: ignore[arg-type]
    )


def test_parked_entry_round_trips() -> None:
    parked = parked_entry(request(1), render(request(1)))
    assert Parked.from_json(parked.to_json()) == parked
    assert "{site}" in parked.title and "第一工厂" not in parked.title  # the labels are values
    assert dict(parked.title_values) == {"site": "第一工厂", "camera": "cam1"}
    assert parked.opened_ms == int(OPENED.timestamp() * 1000)


@pytest.mark.parametrize("vendor", [DINGTALK, WECOM, FEISHU], ids=lambda v: v.name)
def test_a_large_digest_fits_each_vendor_whole(vendor: Any) -> None:
    """500 long Chinese camera labels: the vendor's request stays within its limit, its own cut
    never happens (no entry lost half-way), every key is listed or counted, and every listed
    entry's console link is there as a real URL."""
    long_camera = "装卸区三号门 出现极高风险,人员在压力机旁倒地 [dock.example.com]" * 3
    entries = [
        entry(n, minutes=n, title_values=(("site", "第一工厂"), ("camera", f"{long_camera} #{n}")))
        for n in range(500)
    ]
    budget = VENDOR_LIMITS[vendor.name].digest_bytes
    digest = build_digest(entries, "zh-CN", budget, CONSOLE, neutral=vendor.neutral)
    assert len(digest.keys) == 500 and digest.counted and digest.listed
    carried, message = digest_message(request(0), digest)
    built = vendor.build(carried, message, "http://robot.example/x", "secret", 1.8e9)
    payload = json.loads(built.body)
    if vendor is DINGTALK:
        text = payload["markdown"]["text"]
        assert len(text.encode()) <= 20_000 and text == markdown(message, vendor.neutral)
        assert payload["markdown"]["title"] == digest.title
    elif vendor is WECOM:
        text = payload["markdown"]["content"]
        assert len(text.encode()) <= 4096 and text == markdown(message, vendor.neutral)
    else:
        assert len(built.body) <= 20 * 1024
        [div] = payload["card"]["elements"]  # no buttons on a digest
        lines = plain_lines(message, vendor.neutral, links=False, link=markdown_link)
        assert div["text"]["content"] == "\n".join(lines)
        assert payload["card"]["header"]["title"]["content"] == digest.title
    assert text_of(payload).rstrip().endswith(f"[全部未关闭事件]({CONSOLE})")
    assert digest.title.startswith("500 条通知合并发送")
    assert "Severity" not in text_of(payload) and "风险等级" not in text_of(payload)
    listed = {int(k.split(":")[0].removeprefix("inc-")) for k in digest.listed}
    for n in range(500):  # each listed entry's link, real; none of a counted one
        assert (f"]({CONSOLE}/inc-{n})" in text_of(payload)) == (n in listed), n
    assert "dock.example.com" not in text_of(payload)  # the label's host name is inert


def text_of(payload: dict[str, Any]) -> str:
    if "markdown" in payload:
        return str(payload["markdown"].get("text") or payload["markdown"].get("content"))
    return str(payload["card"]["elements"][0]["text"]["content"])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("86400", 3600.0),  # a day closes a channel an hour at most
        ("inf", None),  # not a finite number: as if absent
        ("nan", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        (None, None),
    ],
)
def test_a_retry_after_is_bounded(header: str | None, expected: float | None) -> None:
    assert seconds(header) == expected
