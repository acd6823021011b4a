"""A `Message` laid out as markdown or as plain lines, its untrusted parts passed through the
vendor's `Neutraliser` (`activities.notify.markup`) and nothing else: riskflow's words, the
markdown riskflow writes around them and the console links go out as they are.

Order, for every vendor: the title (markdown only: a card or a subject carries it elsewhere),
the kind's first line, the summary, the fields, hazards, actions, the links; a digest's
entries (one line each: severity, the message's title as its console link) and its "and N more"
line come after the first line.
"""

from __future__ import annotations

from collections.abc import Callable

from activities.notify.texts import Entry, Message

Neutral = Callable[[str], str]
LinkForm = Callable[[str, str], str]


def markdown_link(label: str, url: str) -> str:
    """A markdown link; `label` is already safe in a link label (trusted or neutralised)."""
    return f"[{label}]({url})"


def plain_link(label: str, url: str) -> str:
    return f"{label}: {url}"


def entry_line(entry: Entry, neutral: Neutral, link: LinkForm, bold: Callable[[str], str]) -> str:
    """One digest line: the severity, then the title (its untrusted values neutralised) as a
    link to the message's console page, when it has one."""
    title = entry.title(neutral)
    shown = link(title, entry.url) if entry.url else title
    return f"- {bold(entry.severity)} {shown}"


def markdown_entry(entry: Entry, neutral: Neutral) -> str:
    """A digest line as `markdown` lays it out (what `digest.build_digest` measures)."""
    return entry_line(entry, neutral, markdown_link, lambda word: f"**{word}**")


def _digest(
    message: Message, neutral: Neutral, link: LinkForm, bold: Callable[[str], str]
) -> list[str]:
    lines = [entry_line(entry, neutral, link, bold) for entry in message.entries]
    if message.more:
        more = message.more_link
        lines.append(f"{message.more}: {link(more.label, more.url)}" if more else message.more)
    return lines


def _sections(message: Message, neutral: Neutral, bold: Callable[[str], str]) -> list[str]:
    lines: list[str] = []
    for label, items in (
        (message.hazards_label, message.hazards),
        (message.actions_label, message.actions),
    ):
        if items:
            lines += ["", bold(label)] + [f"- {neutral(item)}" for item in items]
    return lines


def markdown(message: Message, neutral: Neutral) -> str:
    """Markdown of the subset DingTalk, WeCom and Feishu share (heading, bold, list, links);
    each line of a field ends with two spaces, the markdown line break."""
    lines = [f"### {message.title(neutral)}", "", message.lead, ""]
    lines += _digest(message, neutral, markdown_link, lambda word: f"**{word}**")
    if message.summary:
        lines += [neutral(message.summary), ""]
    lines += [f"**{label}**: {neutral(value)}  " for label, value in message.fields]
    lines += _sections(message, neutral, lambda label: f"**{label}**")
    if message.links:
        lines += ["", " | ".join(f"[{link.label}]({link.url})" for link in message.links)]
    return "\n".join(lines)


def plain_lines(
    message: Message, neutral: Neutral, links: bool = True, link: LinkForm = plain_link
) -> list[str]:
    """The body as plain lines (e-mail; a card's text, whose links are buttons: `links=False`,
    and whose digest lines are markdown links: `link=markdown_link`)."""
    lines = [message.lead, ""]
    lines += _digest(message, neutral, link, lambda word: word)
    if message.summary:
        lines += [neutral(message.summary), ""]
    lines += [f"{label}: {neutral(value)}" for label, value in message.fields]
    lines += _sections(message, neutral, lambda label: f"{label}:")
    if links and message.links:
        lines += [""] + [f"{link.label}: {link.url}" for link in message.links]
    return lines
