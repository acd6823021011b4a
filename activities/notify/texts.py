"""Message texts in the site's language: every word a channel shows is here, one table per
language (the site's `language`, `riskflow.config.sites.Language`: zh-CN or en). `render` turns a
`NotificationRequest` into a `Message`; `activities.notify.layout` lays it out for a vendor.

A message says what happened by its kind: its title and first line differ for a new incident,
an escalation, a reminder, a raised severity, a summary after quiet hours, a resolution and a
dismissal, so a closing message never reads as a new alarm. An `escalated` request at level 0 is
the re-notification of an acknowledged incident whose severity a new assessment raised
(`workflows.incident`, `_reassess`); it is titled as such (`headline_kind`).

The request's untrusted text (summary, hazards, actions, camera and site labels) is kept raw in
the `Message`; each vendor neutralises it for its own markup (`activities.notify.markup`).

A digest of messages parked for a rate-limited robot (`activities.notify.digest`) is riskflow's
own message too, kind `merged` (`merged`): its title and first line are here, each parked
message is an `Entry` (its title's pattern trusted, its labels untrusted, its console link
trusted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from activities.notify.markup import ELLIPSIS
from riskflow.config.sites import Language
from riskflow.contracts.notifications import NotificationRequest

HeadlineKind = Literal[
    "opened",
    "assessed",
    "escalated",
    "upgraded",
    "reminder",
    "summary",
    "resolved",
    "dismissed",
    "merged",
    "still_present",
]
CLOSING: frozenset[str] = frozenset({"resolved", "dismissed"})
MAX_LABEL_CHARS = 64  # one untrusted label (camera, site) in a title or field
MAX_FIELD_CHARS = 128

_EN: dict[str, str] = {
    "title:opened": "New incident: {severity} risk at {site}, camera {camera}",
    "title:escalated": "Escalated to level {level}: {severity} risk at {site}, camera {camera}",
    "title:upgraded": "Severity raised to {severity}: incident at {site}, camera {camera}",
    "title:assessed": "Assessed {severity}: incident at {site}, camera {camera}",
    "title:reminder": "Reminder, not acknowledged: {severity} risk at {site}, camera {camera}",
    "title:still_present": "Still present after acknowledgement: {severity} risk at {site}, "
    "camera {camera}",
    "title:summary": "Held during quiet hours: {severity} risk at {site}, camera {camera}",
    "title:resolved": "Resolved: incident at {site}, camera {camera}",
    "title:dismissed": "Dismissed as a false alarm: incident at {site}, camera {camera}",
    "lead:opened": "A new incident needs attention.",
    "lead:escalated": "Nobody has acknowledged this incident yet: escalated to level {level}.",
    "lead:upgraded": "The situation got worse: the incident's severity was raised.",
    "lead:assessed": "The assessment of the incident you were told about has come in.",
    "pending": "Assessment pending. The detector saw: {detected}.",
    "detected": "{rule}: {count} detection(s)",
    "lead:reminder": "This incident is still waiting for acknowledgement.",
    "lead:still_present": "It was acknowledged, but the hazard is still there after the "
    "expected arrival time: escalation resumes.",
    "lead:summary": "This notification was held during quiet hours and is sent now.",
    "lead:resolved": "The incident is resolved. No action is needed.",
    "lead:dismissed": "The incident was dismissed as a false alarm. No action is needed.",
    "title:merged": "{count} notifications, merged (the robot's rate limit)",
    "lead:merged": "The robot takes only so many messages a minute: these are sent together.",
    "more": "and {count} more",
    "all_incidents": "all open incidents",
    "severity": "Severity",
    "state": "State",
    "situation": "Situation",
    "incident": "Incident",
    "opened_at": "Opened at",
    "hazards": "Hazards",
    "actions": "Recommended actions",
    "acknowledge": "Acknowledge",
    "false_alarm": "False alarm",
    "open_incident": "Open the incident",
    "none": "none",
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "state:open": "open",
    "state:notified": "notified",
    "state:acknowledged": "acknowledged",
    "state:resolved": "resolved",
    "state:dismissed": "dismissed",
    "state:expired": "expired",
}
_ZH: dict[str, str] = {
    "title:opened": "新事件:{site} 摄像头 {camera} 出现{severity}风险",
    "title:escalated": "已升级至第 {level} 级:{site} 摄像头 {camera} 出现{severity}风险",
    "title:upgraded": "风险等级升至{severity}:{site} 摄像头 {camera} 的事件",
    "title:assessed": "评估结果{severity}:{site} 摄像头 {camera} 的事件",
    "title:reminder": "提醒,尚未确认:{site} 摄像头 {camera} 出现{severity}风险",
    "title:still_present": "确认后仍未解除:{site} 摄像头 {camera} 出现{severity}风险",
    "title:summary": "静默时段内暂缓:{site} 摄像头 {camera} 出现{severity}风险",
    "title:resolved": "已解除:{site} 摄像头 {camera} 的事件",
    "title:dismissed": "已判定为误报:{site} 摄像头 {camera} 的事件",
    "lead:opened": "新事件需要处理。",
    "lead:escalated": "该事件尚无人确认,已升级至第 {level} 级。",
    "lead:upgraded": "情况恶化:事件的风险等级已提高。",
    "lead:assessed": "已通知的事件的评估结果到了。",
    "pending": "评估进行中。检测到:{detected}。",
    "detected": "{rule} {count} 处",
    "lead:reminder": "该事件仍在等待确认。",
    "lead:still_present": "已确认,但预计到场时间已过,危险仍在:继续升级通知。",
    "lead:summary": "该通知在静默时段内暂缓,现在补发。",
    "lead:resolved": "事件已解除,无需处理。",
    "lead:dismissed": "事件已判定为误报,无需处理。",
    "title:merged": "{count} 条通知合并发送(机器人发送频率限制)",
    "lead:merged": "机器人每分钟可发送的消息有限,以下通知合并发送。",
    "more": "以及另外 {count} 条",
    "all_incidents": "全部未关闭事件",
    "severity": "风险等级",
    "state": "状态",
    "situation": "情况",
    "incident": "事件编号",
    "opened_at": "发生时间",
    "hazards": "危险因素",
    "actions": "建议措施",
    "acknowledge": "确认处理",
    "false_alarm": "误报",
    "open_incident": "查看事件",
    "none": "无",
    "critical": "极高",
    "high": "高",
    "medium": "中",
    "low": "低",
    "state:open": "待处理",
    "state:notified": "已通知",
    "state:acknowledged": "已确认",
    "state:resolved": "已解除",
    "state:dismissed": "已撤销",
    "state:expired": "已过期",
}
TEXTS: dict[Language, dict[str, str]] = {"en": _EN, "zh-CN": _ZH}


@dataclass(frozen=True)
class Link:
    """A console link riskflow wrote: its label, URL and the button style a card gives it."""

    label: str
    url: str
    style: Literal["primary", "danger", "default"] = "default"


@dataclass(frozen=True)
class Entry:
    """One line of a digest: a message that waited for its robot. Trusted: `severity` (the
    word), `title_pattern` (the message's title with `{site}`/`{camera}` slots) and `url` (its
    console link, "" for none). Untrusted: `title_values`."""

    severity: str
    title_pattern: str
    title_values: tuple[tuple[str, str], ...]
    url: str

    def title(self, neutral: Callable[[str], str]) -> str:
        """The title, its untrusted values passed through `neutral`."""
        return self.title_pattern.format(**{k: neutral(v) for k, v in self.title_values})


@dataclass(frozen=True)
class Message:
    """One notification in words. Trusted (riskflow's): `kind`, `title_pattern`, `lead`, field
    labels, section labels, `links`. Untrusted (raw, for each vendor to neutralise):
    `title_values`, field values, `summary`, `hazards`, `actions`.

    A digest (`kind` "merged", `merged`) has no summary, fields or links of its own: its
    `entries` (each one line with its link), then `more` ("and N more", trusted) with
    `more_link` (the console's incident list)."""

    kind: HeadlineKind
    title_pattern: str
    title_values: tuple[tuple[str, str], ...]
    lead: str
    summary: str
    fields: tuple[tuple[str, str], ...]
    hazards_label: str
    hazards: tuple[str, ...]
    actions_label: str
    actions: tuple[str, ...]
    links: tuple[Link, ...]
    entries: tuple[Entry, ...] = ()
    more: str = ""
    more_link: Link | None = None

    @property
    def closing(self) -> bool:
        return self.kind in CLOSING

    def title(self, neutral: Callable[[str], str]) -> str:
        """The title, its untrusted values passed through `neutral`."""
        return self.title_pattern.format(**{k: neutral(v) for k, v in self.title_values})

    @property
    def free_chars(self) -> int:
        """Characters of untrusted free text (what `cut` may shorten)."""
        return len(self.summary) + sum(map(len, self.hazards)) + sum(map(len, self.actions))

    def cut(self, budget: int) -> Message:
        """This message with at most `budget` characters of free text, in order: summary,
        hazards, actions. The item that crosses the budget ends with `…`; a list that lost
        items ends with a `…` item; a summary cut to nothing is `…`."""
        left = budget

        def take(text: str) -> str | None:
            nonlocal left
            if len(text) <= left:
                left -= len(text)
                return text
            piece = text[: max(left, 0)].rstrip()
            left = 0
            return piece + ELLIPSIS if piece else None

        def take_all(items: tuple[str, ...]) -> tuple[str, ...]:
            kept = [t for t in (take(item) for item in items) if t is not None]
            return (*kept, ELLIPSIS) if len(kept) < len(items) else tuple(kept)

        summary = (take(self.summary) or ELLIPSIS) if self.summary else ""
        hazards, actions = take_all(self.hazards), take_all(self.actions)
        return replace(self, summary=summary, hazards=hazards, actions=actions)


def with_query(url: str, **params: str) -> str:
    """`url` with `params` added to its query string."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def headline_kind(request: NotificationRequest) -> HeadlineKind:
    """The kind a message is titled by (see the module docstring for `upgraded`)."""
    if request.kind == "escalated" and request.escalation_level == 0:
        return "upgraded"
    return request.kind


def clip(text: str, limit: int) -> str:
    """An untrusted label kept to `limit` characters."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _links(request: NotificationRequest, kind: HeadlineKind, t: dict[str, str]) -> tuple[Link, ...]:
    if not request.console_url:
        return ()
    if kind in CLOSING:  # nothing left to acknowledge: the incident's page only
        return (Link(t["open_incident"], request.console_url),)
    return (
        Link(t["acknowledge"], with_query(request.console_url, action="ack"), "primary"),
        Link(t["false_alarm"], with_query(request.console_url, action="dismiss"), "danger"),
    )


def _summary(request: NotificationRequest, t: dict[str, str]) -> str:
    """The assessment's summary; before the LLM answered, what the detector saw (untrusted
    either way: a camera label may be in `detected`)."""
    if request.assessment_pending and not request.summary:
        detected = request.detected  # runs before `detected_count`: the workflow's English
        if request.detected_count:
            detected = t["detected"].format(rule=request.situation, count=request.detected_count)
        return t["pending"].format(detected=clip(detected, MAX_FIELD_CHARS))
    return request.summary


def local_time(at: datetime, zone: str) -> str:
    """`at` on the site's wall clock, with its UTC offset: "2026-12-08 01:52:31 UTC+08:00"
    (an unknown zone: UTC)."""
    try:
        local = at.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        local = at.astimezone(UTC)
    offset = local.strftime("%z") or "+0000"
    return f"{local:%Y-%m-%d %H:%M:%S} UTC{offset[:3]}:{offset[3:]}"


def render(request: NotificationRequest) -> Message:
    """The words of `request` in `request.language`."""
    t = TEXTS[request.language]
    kind = headline_kind(request)
    severity = t.get(request.severity.value, request.severity.value)
    site = clip(request.site_name or request.site_id, MAX_LABEL_CHARS)
    level = str(request.escalation_level)
    fields = [
        (t["severity"], severity),
        (t["state"], t.get(f"state:{request.state}", request.state)),
    ]
    if request.situation:
        fields.append((t["situation"], clip(request.situation, MAX_FIELD_CHARS)))
    fields += [
        (t["incident"], clip(request.incident_id, MAX_FIELD_CHARS)),
        (t["opened_at"], local_time(request.opened_at, request.timezone)),
    ]
    return Message(
        kind=kind,
        title_pattern=t[f"title:{kind}"].replace("{severity}", severity).replace("{level}", level),
        title_values=(("site", site), ("camera", clip(request.camera_id, MAX_LABEL_CHARS))),
        lead=t[f"lead:{kind}"].format(level=level),
        summary=_summary(request, t),
        fields=tuple(fields),
        hazards_label=t["hazards"],
        hazards=tuple(request.hazards),
        actions_label=t["actions"],
        actions=tuple(request.recommended_actions),
        links=_links(request, kind, t),
    )


def merged(
    language: Language,
    count: int,
    entries: tuple[Entry, ...],
    more: int = 0,
    list_url: str = "",
) -> Message:
    """A digest of `count` messages in `language`: `entries` listed one a line, `more` of them
    only counted (with a link to `list_url`, the console's incident list, when there is one)."""
    t = TEXTS[language]
    return Message(
        kind="merged",
        title_pattern=t["title:merged"].format(count=count),
        title_values=(),
        lead=t["lead:merged"],
        summary="",
        fields=(),
        hazards_label=t["hazards"],
        hazards=(),
        actions_label=t["actions"],
        actions=(),
        links=(),
        entries=entries,
        more=t["more"].format(count=more) if more else "",
        more_link=Link(t["all_incidents"], list_url) if more and list_url else None,
    )


def severity_word(language: Language, severity: str) -> str:
    """The severity `severity` (a `RiskLevel` value) in `language`."""
    return TEXTS[language].get(severity, severity)
