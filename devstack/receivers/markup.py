"""What a vendor's client would make active in a message the receiver got: mentions, links,
images and coloured text, read the way each vendor's documented markup reads them (DingTalk
markdown, WeCom markdown, Feishu `lark_md`, CommonMark for the webhook's `text`, plain text for
e-mail, where readers link bare URLs). Recorded with each notification as `markup`, so a test
can tell what a message would do in the group, not only what it says.

An approximation on purpose: it looks for the forms, it does not render. It errs towards
finding too much (every bare URL or host name counts as a link), never too little.
"""

from __future__ import annotations

import re
from typing import Any

_LINK = re.compile(r"!?\[([^\]\n]*)\]\(([^)\s]*)[^)]*\)")
_TAG = re.compile(r"<\s*(/?)\s*([a-zA-Z@_]+)([^>]*)>")
_BARE_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s)>\]]+")
_HOST = re.compile(r"(?i)\b(?:[a-z0-9-]+\.)+[a-z]{2,63}\b")
_HREF = re.compile(r"""(?i)\b(?:href|url)\s*=\s*['"]?([^'"\s>]+)""")


def _texts(vendor: str, payload: dict[str, Any]) -> list[str]:
    """The marked-up strings of a payload, by vendor."""
    if vendor == "dingtalk":
        body = payload.get(payload.get("msgtype", ""), {}) or {}
        return [str(body.get("title", "")), str(body.get("text", body.get("content", "")))]
    if vendor == "wecom":
        body = payload.get(payload.get("msgtype", ""), {}) or {}
        return [str(body.get("content", ""))]
    if vendor == "feishu":
        card = payload.get("card") or {}
        found = [
            str((e.get("text") or {}).get("content", ""))
            for e in card.get("elements", [])
            if isinstance(e, dict)
        ]
        return [*found, str(((card.get("header") or {}).get("title") or {}).get("content", ""))]
    if vendor == "webhook":
        return [str(payload.get("title", "")), str(payload.get("text", ""))]
    return [str(payload.get("subject", "")), str(payload.get("text", ""))]


def _buttons(payload: dict[str, Any]) -> list[str]:
    card = payload.get("card") or {}
    return [
        str(button.get("url", ""))
        for element in card.get("elements", [])
        if isinstance(element, dict) and element.get("tag") == "action"
        for button in element.get("actions") or []
        if isinstance(button, dict) and button.get("url")
    ]


def _mentions(vendor: str, payload: dict[str, Any], tags: list[tuple[str, str]]) -> list[str]:
    found = [f"<{name}{rest}>" for name, rest in tags if name.lower() == "at" or name[0] == "@"]
    at = payload.get("at") or {}
    if vendor == "dingtalk" and isinstance(at, dict):
        if at.get("isAtAll"):
            found.append("isAtAll")
        found += [f"@{m}" for m in at.get("atMobiles") or []]
        found += [f"@{u}" for u in at.get("atUserIds") or []]
    return found


def active_markup(vendor: str, payload: dict[str, Any]) -> dict[str, list[str]]:
    """`{"mentions": [...], "links": [...], "images": [...], "colours": [...]}`: what a client
    would make of the payload. Links are targets (URLs, or the host name a reader would link)."""
    links: list[str] = _buttons(payload)
    images: list[str] = []
    colours: list[str] = []
    tags: list[tuple[str, str]] = []
    for text in _texts(vendor, payload):
        if vendor == "email":  # plain text: no markup, but readers link URLs and host names
            links += _BARE_URL.findall(text) + _HOST.findall(_BARE_URL.sub(" ", text))
            continue
        for match in _LINK.finditer(text):
            (images if match.group(0).startswith("!") else links).append(match.group(2))
        rest = _LINK.sub(" ", text)
        for match in _TAG.finditer(rest):
            name, attributes = match.group(2), match.group(3)
            tags.append((name, attributes))
            if name.lower() in ("font", "text_tag"):
                colours.append(match.group(0))
            if name.lower() == "img":
                images.append(match.group(0))
            links += _HREF.findall(attributes)
        rest = _TAG.sub(" ", rest)
        bare = _BARE_URL.findall(rest)
        links += bare
        links += _HOST.findall(_BARE_URL.sub(" ", rest))
    return {
        "mentions": _mentions(vendor, payload, tags),
        "links": links,
        "images": images,
        "colours": colours,
    }
