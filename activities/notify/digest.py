"""One message for many: the digest a robot gets when messages were parked for it.

A parked message is kept as a `Parked` entry (its idempotency key, title, severity, link and
when its incident opened). A digest is riskflow's own message (`texts.merged`, kind `merged`):
its title ("N notifications, merged") and first line are riskflow's words, each entry is one
line whose link is the console URL riskflow wrote and whose label is the severity and the
parked message's title, that title's untrusted values (site and camera labels) passed through
the vendor's `NEUTRAL`. `build_digest` lists the entries most severe first and then the oldest,
within the vendor's size (`limits.VendorLimits.digest_bytes`, measured on the neutralised
markdown the vendor sends, as JSON-escaped UTF-8); entries that do not fit are counted
("and N more") with a link to the console's incident list. `digest_message` turns it into the
request and message a vendor module lays out. Pure: no clock, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from activities.notify.layout import markdown, markdown_entry
from activities.notify.texts import Entry, Message, merged, severity_word
from riskflow.config.sites import Language
from riskflow.contracts.notifications import NotificationRequest
from riskflow.levels import RiskLevel

Neutral = Callable[[str], str]


@dataclass(frozen=True)
class Parked:
    """A message that waits for its robot: what a digest shows of it. `title` is its title
    pattern (riskflow's words, with `{site}`/`{camera}` slots: `texts.Message.title_pattern`),
    `title_values` the untrusted labels that fill the slots, `link` its console page."""

    key: str
    title: str
    severity: RiskLevel
    link: str
    opened_ms: int
    title_values: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "title": self.title,
                "title_values": [list(pair) for pair in self.title_values],
                "severity": self.severity.value,
                "link": self.link,
                "opened_ms": self.opened_ms,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Parked:
        """An entry from its JSON; one parked before titles had slots (no `title_values`)
        has a raw title, so all of it is an untrusted value."""
        data = json.loads(raw)
        if "title_values" in data:
            title = data["title"]
            values = tuple((str(k), str(v)) for k, v in data["title_values"])
        else:
            title, values = "{title}", (("title", str(data["title"])),)
        return cls(
            key=data["key"],
            title=title,
            severity=RiskLevel(data["severity"]),
            link=data["link"],
            opened_ms=int(data["opened_ms"]),
            title_values=values,
        )

    def entry(self, language: Language) -> Entry:
        """This message as one line of a digest in `language`."""
        severity = severity_word(language, self.severity.value)
        return Entry(severity, self.title, self.title_values, self.link)


def parked_entry(request: NotificationRequest, message: Message) -> Parked:
    """`request` as a digest shows it; `message` is its rendering (`texts.render`)."""
    return Parked(
        key=request.idempotency_key,
        title=message.title_pattern,
        severity=request.severity,
        link=request.console_url,
        opened_ms=int(request.opened_at.timestamp() * 1000),
        title_values=message.title_values,
    )


@dataclass(frozen=True)
class Digest:
    """The digest's `message` (kind `merged`); `listed` keys have a line each, `counted` keys
    are only counted; `severity` is the highest of all."""

    message: Message
    severity: RiskLevel
    listed: tuple[str, ...]
    counted: tuple[str, ...]

    @property
    def title(self) -> str:
        return self.message.title_pattern  # riskflow's words only

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


def build_digest(
    entries: list[Parked],
    language: Language,
    budget_bytes: int,
    list_url: str = "",
    *,
    neutral: Neutral,
) -> Digest:
    """One digest of `entries` whose markdown (`layout.markdown`, untrusted values passed
    through `neutral`, the vendor's `NEUTRAL`) fits `budget_bytes` (JSON-escaped UTF-8); what
    does not fit is counted with a link to `list_url` (see the module docstring). The title,
    the first line and the count line are always there, so a tiny budget lists nobody."""
    if not entries:
        raise ValueError("a digest needs at least one entry")
    count = len(entries)
    ordered = sorted(entries, key=lambda e: (-e.severity.rank, e.opened_ms, e.key))

    def size(message: Message) -> int:
        return _escaped_bytes(markdown(message, neutral))

    head = size(merged(language, count, ()))  # "### title\n\nlead\n"
    used = head
    lines: list[Entry] = []
    for position, parked in enumerate(ordered):
        line = parked.entry(language)
        rest = count - position - 1
        tail = size(merged(language, count, (), rest, list_url)) - head if rest else 0
        cost = _escaped_bytes("\n" + markdown_entry(line, neutral))
        if used + cost + tail > budget_bytes:
            break
        lines.append(line)
        used += cost
    listed, counted = ordered[: len(lines)], ordered[len(lines) :]
    return Digest(
        message=merged(language, count, tuple(lines), len(counted), list_url),
        severity=ordered[0].severity,
        listed=tuple(e.key for e in listed),
        counted=tuple(e.key for e in counted),
    )


def digest_message(
    request: NotificationRequest, digest: Digest
) -> tuple[NotificationRequest, Message]:
    """What a vendor module lays out for `digest`: `request` (its key, channel and language)
    carrying the digest's severity and title, none of one incident's text or links, and the
    digest's own message."""
    carried = request.model_copy(
        update={
            "kind": "summary",
            "severity": digest.severity,
            "title": digest.title,
            "summary": "",
            "hazards": [],
            "recommended_actions": [],
            "console_url": "",
        }
    )
    return carried, digest.message
