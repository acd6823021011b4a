"""Untrusted text made inert in a vendor's markup, and messages fitted to a vendor's size limit.

Everything riskflow did not write is untrusted: the model's summary, hazards and recommended
actions, and the camera and site labels (a camera id is whatever the edge sent). Each vendor
module owns one `Neutraliser`, built here from the characters that open its markup, and every
untrusted string it lays out passes through it (`activities.notify.layout`); riskflow's own words
and the console links never do.

Why substitution and not escaping: none of the robots documents an escape syntax for its
markdown subset (DingTalk, WeCom), or documents one only for some card components (Feishu), so a
backslash may be shown or may be eaten. A character that opens markup is replaced by its
full-width form (`<` -> `＜`, `[` -> `［`, `@` -> `＠`, ...), which reads the same in Chinese and
English text and is markup in no vendor's subset. On top of that, for every vendor:
- line breaks and control characters become one space (no heading, quote or list can start a
  line of its own, and no header of an e-mail can be added),
- anything a client could turn into a link loses its link form: `scheme://` gets a full-width
  colon, the dots of a host name (`evil.example.com`, `www.x.cn`) become `․` (U+2024), because
  chat clients and mail readers link bare URLs and host names by themselves.

`fit` keeps a message within a limit counted in the vendor's unit (UTF-8 bytes of the body or
content, or characters) by cutting the untrusted free text (summary first kept, then hazards,
then actions) and never the title, fields or links.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from activities.notify.texts import Message

ELLIPSIS = "…"
_ASCII_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}):(?=/)")
_HOST = re.compile(r"(?i)\b(?:[a-z0-9-]+\.)+[a-z]{2,63}\b")
_SPACES = re.compile(r"\s+")


def full_width(char: str) -> str:
    """The full-width form (U+FF01..U+FF5E) of a printable ASCII punctuation character."""
    return chr(ord(char) + 0xFEE0)


def _one_line(text: str) -> str:
    """Control and format characters (line breaks, bidi overrides, zero-widths) become spaces;
    runs of white space become one space."""
    kept = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    return _SPACES.sub(" ", kept).strip()


def defang(text: str) -> str:
    """`scheme://` and host names lose the form clients turn into links."""
    text = _SCHEME.sub(lambda m: m.group(1) + full_width(":"), text)
    return _HOST.sub(lambda m: m.group(0).replace(".", "\u2024"), text)


@dataclass(frozen=True)
class Neutraliser:
    """One vendor's treatment of untrusted text: `specials` are the characters that open its
    markup (each replaced by its full-width form); line breaks, control characters and link
    forms are neutralised for every vendor (see the module docstring)."""

    specials: str
    _table: dict[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.specials) - set(_ASCII_PUNCTUATION)
        if unknown:
            raise ValueError(f"not ASCII punctuation: {''.join(sorted(unknown))!r}")
        table = {ord(c): full_width(c) for c in self.specials}
        object.__setattr__(self, "_table", table)

    def __call__(self, text: str) -> str:
        return defang(_one_line(text)).translate(self._table)


PLAIN = Neutraliser("")  # e-mail: plain text, no markup, but links and line breaks still count


def fit(message: Message, size: Callable[[Message], int], limit: int) -> Message:
    """`message` with its untrusted free text cut so that `size(message) <= limit` (size in the
    vendor's unit); title, fields and links are kept whole. When even no free text does not
    fit, the message without free text (the vendor's own limit check then refuses it)."""
    if size(message) <= limit:
        return message
    low, high = 0, message.free_chars  # cut(low) is the best known to fit
    if size(message.cut(0)) > limit:
        return message.cut(0)
    while low < high:
        middle = (low + high + 1) // 2
        if size(message.cut(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return message.cut(low)


def utf8_size(text: str) -> int:
    return len(text.encode())
