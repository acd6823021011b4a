"""One message for many: the digest a robot gets when messages were parked for it.

A parked message is kept as a `Parked` entry (its idempotency key, title, severity, link and
when its incident opened). `build_digest` lays every entry out as one markdown line, most
severe first and then the oldest, within the vendor's size (`limits.VendorLimits.digest_bytes`,
measured as the JSON-escaped UTF-8 the request carries); entries that do not fit are counted
("and N more") with a link to the console's incident list. `digest_message` turns it into the
request and message a vendor module lays out. Pure: no clock, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from activities.notify.texts import Message, render
from riskflow.config.sites import Language
from riskflow.contracts.notifications import NotificationRequest
from riskflow.levels import RiskLevel

TEXTS: dict[Language, dict[str, str]] = {
    "en": {
        "title": "{count} notifications, merged (the robot's rate limit)",
        "more": "and {count} more",
        "all": "all open incidents",
        "critical": "critical",
        "high": "high",
        "medium": "medium",
        "low": "low",
        "none": "none",
    },
    "zh-CN": {
        "title": "{count} 条通知合并发送(机器人发送频率限制)",
        "more": "以及另外 {count} 条",
        "all": "全部未关闭事件",
        "critical": "极高",
        "high": "高",
        "medium": "中",
        "low": "低",
        "none": "无",
    },
}


@dataclass(frozen=True)
class Parked:
    """A message that waits for its robot: what a digest shows of it."""

    key: str
    title: str
    severity: RiskLevel
    link: str
    opened_ms: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "title": self.title,
                "severity": self.severity.value,
                "link": self.link,
                "opened_ms": self.opened_ms,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Parked:
        data = json.loads(raw)
        return cls(
            key=data["key"],
            title=data["title"],
            severity=RiskLevel(data["severity"]),
            link=data["link"],
            opened_ms=int(data["opened_ms"]),
        )


def parked_entry(request: NotificationRequest, title: str) -> Parked:
    """`request` as a digest shows it; `title` is its rendered title."""
    return Parked(
        key=request.idempotency_key,
        title=title,
        severity=request.severity,
        link=request.console_url,
        opened_ms=int(request.opened_at.timestamp() * 1000),
    )


@dataclass(frozen=True)
class Digest:
    """`title` and markdown `body`; `listed` keys have a line each, `counted` keys are only
    counted; `severity` is the highest of all."""

    title: str
    body: str
    severity: RiskLevel
    listed: tuple[str, ...]
    counted: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return self.listed + self.counted


def incidents_list_url(console_url: str) -> str:
    """The console's incident list, from one incident's page (`.../incidents/<id>`); "" when
    the link is not an incident page."""
    base, _, last = console_url.rstrip("/").rpartition("/")
    return base if last and base.endswith("/incidents") else ""


def _escaped_bytes(text: str) -> int:
    """The UTF-8 bytes `text` takes inside a JSON string."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def _label(text: str) -> str:
    """Text safe inside a markdown link label."""
    return " ".join(text.replace("[", "(").replace("]", ")").split())


def _line(entry: Parked, words: dict[str, str]) -> str:
    severity = words.get(entry.severity.value, entry.severity.value)
    title = _label(entry.title)
    shown = f"[{title}]({entry.link})" if entry.link else title
    return f"- **{severity}** {shown}"


def _more(count: int, words: dict[str, str], list_url: str) -> str:
    more = words["more"].format(count=count)
    return f"{more}: [{words['all']}]({list_url})" if list_url else more


def build_digest(
    entries: list[Parked], language: Language, budget_bytes: int, list_url: str = ""
) -> Digest:
    """One digest of `entries` whose `### title` + body fits `budget_bytes` (JSON-escaped
    UTF-8); what does not fit is counted with a link to `list_url` (see the module docstring).
    The title and the count line are always there, so a tiny budget lists nobody."""
    if not entries:
        raise ValueError("a digest needs at least one entry")
    words = TEXTS[language]
    ordered = sorted(entries, key=lambda e: (-e.severity.rank, e.opened_ms, e.key))
    title = words["title"].format(count=len(ordered))
    used = _escaped_bytes(f"### {title}\n\n")
    lines: list[str] = []
    for position, entry in enumerate(ordered):
        line = _line(entry, words)
        rest = len(ordered) - position - 1
        tail = _escaped_bytes("\n" + _more(rest, words, list_url)) if rest else 0
        cost = _escaped_bytes(line + "\n")
        if used + cost + tail > budget_bytes:
            break
        lines.append(line)
        used += cost
    listed = ordered[: len(lines)]
    counted = ordered[len(lines) :]
    if counted:
        lines.append(_more(len(counted), words, list_url))
    return Digest(
        title=title,
        body="\n".join(lines),
        severity=ordered[0].severity,
        listed=tuple(e.key for e in listed),
        counted=tuple(e.key for e in counted),
    )


def digest_message(
    request: NotificationRequest, digest: Digest
) -> tuple[NotificationRequest, Message]:
    """What a vendor module lays out for `digest`: `request` (its key, channel and language)
    as a held summary of the digest's severity, title and lines, and its message without one
    incident's fields or buttons."""
    carried = request.model_copy(
        update={
            "kind": "summary",
            "severity": digest.severity,
            "title": digest.title,
            "summary": digest.body,
            "hazards": [],
            "recommended_actions": [],
            "console_url": "",
        }
    )
    return carried, replace(render(carried), fields=())
