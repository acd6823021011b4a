"""Message texts in the site's language: every word a channel shows is here, one table per
language. `render` turns a `NotificationRequest` into a `Message` each vendor module lays out
in its own format."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from riskflow.config.sites import Language
from riskflow.contracts.notifications import NotificationRequest

TEXTS: dict[Language, dict[str, str]] = {
    "en": {
        "opened": "Incident: {severity} risk at {site}, camera {camera}",
        "escalated": "Escalated (level {level}): {severity} risk at {site}, camera {camera}",
        "reminder": "Not acknowledged yet: {severity} risk at {site}, camera {camera}",
        "summary": "Held during quiet hours: {severity} risk at {site}, camera {camera}",
        "resolved": "Resolved: incident at {site}, camera {camera}",
        "dismissed": "Dismissed as a false alarm: incident at {site}, camera {camera}",
        "severity": "Severity",
        "state": "State",
        "incident": "Incident",
        "opened_at": "Opened at",
        "hazards": "Hazards",
        "actions": "Recommended actions",
        "acknowledge": "Acknowledge",
        "false_alarm": "False alarm",
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
    },
    "zh-CN": {
        "opened": "事件:{site} 摄像头 {camera} 出现{severity}风险",
        "escalated": "已升级(第 {level} 级):{site} 摄像头 {camera} 出现{severity}风险",
        "reminder": "尚未确认:{site} 摄像头 {camera} 出现{severity}风险",
        "summary": "静默时段内暂缓:{site} 摄像头 {camera} 出现{severity}风险",
        "resolved": "已解除:{site} 摄像头 {camera} 的事件",
        "dismissed": "已判定为误报:{site} 摄像头 {camera} 的事件",
        "severity": "风险等级",
        "state": "状态",
        "incident": "事件编号",
        "opened_at": "发生时间",
        "hazards": "危险因素",
        "actions": "建议措施",
        "acknowledge": "确认处理",
        "false_alarm": "误报",
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
    },
}


@dataclass(frozen=True)
class Message:
    """One notification in words: `title` (one line), `summary` (the assessment's), `fields`
    (label, value) in order, `hazards` and `actions` as lists, and the console links ("" without
    a console)."""

    title: str
    summary: str
    fields: list[tuple[str, str]]
    hazards_label: str
    hazards: list[str]
    actions_label: str
    actions: list[str]
    ack_label: str
    ack_url: str
    dismiss_label: str
    dismiss_url: str

    def plain_lines(self) -> list[str]:
        """The body as plain text lines (e-mail, and the text part of other formats)."""
        lines = [self.summary, ""] if self.summary else []
        lines += [f"{label}: {value}" for label, value in self.fields]
        if self.hazards:
            lines += ["", f"{self.hazards_label}:"] + [f"- {h}" for h in self.hazards]
        if self.actions:
            lines += ["", f"{self.actions_label}:"] + [f"- {a}" for a in self.actions]
        return lines

    def markdown(self) -> str:
        """Markdown understood by DingTalk and WeCom robots (headings, bold, lists, links)."""
        lines = [f"### {self.title}", ""]
        if self.summary:
            lines += [self.summary, ""]
        lines += [f"**{label}**: {value}  " for label, value in self.fields]
        if self.hazards:
            lines += ["", f"**{self.hazards_label}**"] + [f"- {h}" for h in self.hazards]
        if self.actions:
            lines += ["", f"**{self.actions_label}**"] + [f"- {a}" for a in self.actions]
        if self.ack_url:
            links = (
                f"[{self.ack_label}]({self.ack_url}) | [{self.dismiss_label}]({self.dismiss_url})"
            )
            lines += ["", links]
        return "\n".join(lines)


def with_query(url: str, **params: str) -> str:
    """`url` with `params` added to its query string."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def render(request: NotificationRequest) -> Message:
    """The words of `request` in `request.language`."""
    t = TEXTS[request.language]
    severity = t.get(request.severity.value, request.severity.value)
    site = request.site_name or request.site_id
    title = request.title or t[request.kind].format(
        severity=severity, site=site, camera=request.camera_id, level=request.escalation_level
    )
    fields = [
        (t["severity"], severity),
        (t["state"], t.get(f"state:{request.state}", request.state)),
        (t["incident"], request.incident_id),
        (t["opened_at"], request.opened_at.isoformat(timespec="seconds")),
    ]
    ack = dismiss = ""
    if request.console_url:
        ack = with_query(request.console_url, action="ack")
        dismiss = with_query(request.console_url, action="dismiss")
    return Message(
        title=title,
        summary=request.summary,
        fields=fields,
        hazards_label=t["hazards"],
        hazards=list(request.hazards),
        actions_label=t["actions"],
        actions=list(request.recommended_actions),
        ack_label=t["acknowledge"],
        ack_url=ack,
        dismiss_label=t["false_alarm"],
        dismiss_url=dismiss,
    )
