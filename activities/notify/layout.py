"""A `Message` laid out as markdown or as plain lines, its untrusted parts passed through the
vendor's `Neutraliser` (`activities.notify.markup`) and nothing else: riskflow's words, the
markdown riskflow writes around them and the console links go out as they are.

Order, for every vendor: the title (markdown only: a card or a subject carries it elsewhere),
the kind's first line, the summary, the fields, hazards, actions, the links.
"""

from __future__ import annotations

from collections.abc import Callable

from activities.notify.texts import Message

Neutral = Callable[[str], str]


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
    if message.summary:
        lines += [neutral(message.summary), ""]
    lines += [f"**{label}**: {neutral(value)}  " for label, value in message.fields]
    lines += _sections(message, neutral, lambda label: f"**{label}**")
    if message.links:
        lines += ["", " | ".join(f"[{link.label}]({link.url})" for link in message.links)]
    return "\n".join(lines)


def plain_lines(message: Message, neutral: Neutral, links: bool = True) -> list[str]:
    """The body as plain lines (e-mail; a card's text, whose links are buttons: `links=False`)."""
    lines = [message.lead, ""]
    if message.summary:
        lines += [neutral(message.summary), ""]
    lines += [f"{label}: {neutral(value)}" for label, value in message.fields]
    lines += _sections(message, neutral, lambda label: f"{label}:")
    if links and message.links:
        lines += [""] + [f"{link.label}: {link.url}" for link in message.links]
    return lines
