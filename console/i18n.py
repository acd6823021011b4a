"""Chinese and English: the page's words, and which language a request gets.

Order: the `lang` cookie (set by the language switch), else the best `Accept-Language`
entry we have (any `zh*` reads as `zh-CN`), else English.
"""

from __future__ import annotations

from fastapi import Request

LANGUAGES = ("en", "zh-CN")
LANG_COOKIE = "lang"

_WORDS: dict[str, tuple[str, str]] = {
    # key: (English, 简体中文)
    "title": ("riskflow console", "riskflow 控制台"),
    "cameras": ("Cameras", "摄像头"),
    "incidents": ("Incidents", "事件"),
    "alerts": ("Alerts", "告警"),
    "key_pool": ("Key pool", "密钥池"),
    "logout": ("Log out", "退出"),
    "login": ("Log in", "登录"),
    "username": ("Username", "用户名"),
    "password": ("Password", "密码"),
    "bad_login": ("Wrong username or password.", "用户名或密码错误。"),
    "throttled": ("Too many failed logins; wait a minute.", "登录失败次数过多，请稍后再试。"),
    "level_none": ("None", "无"),
    "level_low": ("Low", "低"),
    "level_medium": ("Medium", "中"),
    "level_high": ("High", "高"),
    "level_critical": ("Critical", "严重"),
    "level_unknown": ("No assessment", "暂无评估"),
    "level_failed": ("Assessment failed", "评估失败"),
    "score": ("Score", "分数"),
    "age": ("Assessed", "评估于"),
    "ago": ("ago", "前"),
    "open_incidents": ("open incidents", "未处理事件"),
    "snapshot": ("Latest snapshot of camera", "摄像头最新快照"),
    "live": ("Live", "实时"),
    "offline": ("Reconnecting…", "重新连接中…"),
    "site": ("Site", "站点"),
    "camera": ("Camera", "摄像头"),
    "time": ("Time", "时间"),
    "level": ("Level", "级别"),
    "summary": ("Summary", "摘要"),
    "no_alerts": ("No alerts.", "暂无告警。"),
    "key": ("Key", "密钥"),
    "group": ("Quota group", "配额组"),
    "use_1s": ("Calls last 1 s", "近 1 秒调用"),
    "use_60s": ("Calls last 60 s", "近 60 秒调用"),
    "in_flight": ("In flight", "进行中"),
    "cooldown": ("Cooldown", "冷却"),
    "state": ("State", "状态"),
    "enabled": ("enabled", "启用"),
    "disabled": ("disabled", "停用"),
    "no_keys": ("No keys in the pool yet.", "密钥池中暂无密钥。"),
    "severity": ("Severity", "严重程度"),
    "opened": ("Opened", "开始于"),
    "rule": ("Rule", "规则"),
    "all_open": ("all open", "全部未关闭"),
    "filter": ("Filter", "筛选"),
    "no_incidents": ("No incidents.", "暂无事件。"),
    "incident": ("Incident", "事件"),
    "timeline": ("Timeline", "时间线"),
    "frames": ("Frames", "画面"),
    "assessments": ("Assessments", "评估"),
    "hazards": ("Hazards", "危险"),
    "actions_recommended": ("Recommended actions", "建议措施"),
    "notifications": ("Notifications sent", "已发送通知"),
    "escalation": ("Escalation level", "升级级别"),
    "acknowledged_by": ("Acknowledged by", "确认人"),
    "closed_by": ("Closed by", "关闭人"),
    "who": ("Who", "操作者"),
    "event": ("Event", "记录"),
    "what": ("What", "内容"),
    "detections": ("detections", "检测数"),
    "acknowledge": ("Acknowledge", "确认"),
    "resolve": ("Resolve", "解决"),
    "false_alarm": ("False alarm", "误报"),
    "comment": ("Comment", "备注"),
    "comment_text": ("Comment or reason", "备注或原因"),
    "eta": ("On my way: arriving in", "马上到: 预计"),
    "minutes": ("min", "分钟"),
    "follow_up": ("Camera checked again at", "到时复查画面"),
    "action_done": ("Done: the incident is now", "已完成：事件当前状态"),
    "action_failed": ("Refused", "被拒绝"),
    "state_open": ("open", "未处理"),
    "state_notified": ("notified", "已通知"),
    "state_acknowledged": ("acknowledged", "已确认"),
    "state_resolved": ("resolved", "已解决"),
    "state_dismissed": ("dismissed", "已忽略"),
    "state_expired": ("expired", "已过期"),
    "signed_in_as": ("Signed in as", "当前用户"),
    "newer": ("Newer", "较新"),
    "older": ("Older", "较早"),
    "language": ("Language", "语言"),
}


def words(lang: str) -> dict[str, str]:
    """Every word of the page in `lang` (`en` or `zh-CN`)."""
    index = 1 if lang == "zh-CN" else 0
    return {key: pair[index] for key, pair in _WORDS.items()}


def _from_accept_language(header: str) -> str | None:
    ranked: list[tuple[float, str]] = []
    for part in header.split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        tag = tag.strip().lower()
        lang = "zh-CN" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        if lang and quality > 0:
            ranked.append((quality, lang))
    ranked.sort(key=lambda pair: -pair[0])  # stable: equal weights keep the header's order
    return ranked[0][1] if ranked else None


def pick_language(request: Request) -> str:
    """`en` or `zh-CN` for this request."""
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGUAGES:
        return cookie
    return _from_accept_language(request.headers.get("accept-language", "")) or "en"
