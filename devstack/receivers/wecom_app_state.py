"""What the WeCom app simulator remembers: access tokens, cards as each recipient sees them,
the `response_code`s it issued, and recent messages for the duplicate check. In memory;
`State.clear` (on `POST /admin/reset`) forgets it all.

Lifetimes as documented: a token 7200 s, the same one returned while it lasts (/91039
"有效期内重复获取返回相同结果"); a `response_code` single-use for 72 h, the one `message/send`
returns and each click's (/94888; older copies of /90240 said 24 h for a click's).
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field
from typing import Any

from devstack.receivers.wecom_app_requests import Recipients

TOKEN_SECONDS = 7200
SEND_CODE_SECONDS = 72 * 3600
CLICK_CODE_SECONDS = 72 * 3600


@dataclass
class Token:
    channel: str
    expires_at: float
    revoked: bool = False  # POST /admin/wecom-app/expire-tokens: WeCom ended it early


@dataclass
class Code:
    """A `response_code`: which card it may update once, until when."""

    channel: str
    task_id: str
    source: str  # "send" or "click"
    userid: str | None
    issued_at: float
    expires_at: float
    used_at: float | None = None


@dataclass
class View:
    """A card as someone sees it: the template_card now, and the button text if an update
    replaced the buttons (one disabled button with that text)."""

    card: dict[str, Any]
    replaced_name: str | None = None

    def replaced(self, name: str) -> View:
        card = copy.deepcopy(self.card)
        card["button_list"] = [{"text": name, "disabled": True}]
        if isinstance(card.get("button_selection"), dict):
            card["button_selection"]["disable"] = True
        return View(card, name)

    def keys(self) -> list[str]:
        """The keys of the buttons one can click (callback buttons, not disabled)."""
        return [
            b["key"]
            for b in self.card.get("button_list", [])
            if "key" in b and not b.get("disabled") and b.get("type", 0) == 0
        ]

    def as_json(self) -> dict[str, Any]:
        return {"card": self.card, "replaced_name": self.replaced_name}


@dataclass
class Card:
    channel: str
    task_id: str
    msgid: str
    recipients: Recipients
    everyone: View  # what all recipients see but those below
    per_user: dict[str, View] = field(default_factory=dict)
    per_party: dict[str, View] = field(default_factory=dict)
    per_tag: dict[str, View] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    clicks: list[dict[str, Any]] = field(default_factory=list)

    def reaches(self, userid: str) -> bool:
        """Whether `userid` may have the card (a department or tag may hold anyone). WeCom
        userids are not case-sensitive (90236: answered lower-cased)."""
        r = self.recipients
        users = {u.casefold() for u in r.users}
        return bool(r.parties or r.tags) or "@all" in r.users or userid.casefold() in users

    def view_of(self, userid: str) -> View:
        """What `userid` sees; `per_user` is keyed by the lower-cased userid."""
        return self.per_user.get(userid.casefold(), self.everyone)

    def for_everyone(self, targets: Recipients) -> bool:
        """Whether an update naming `targets` reaches every recipient (the card's own)."""
        mine = self.recipients
        return (set(targets.users), set(targets.parties), set(targets.tags)) == (
            set(mine.users),
            set(mine.parties),
            set(mine.tags),
        )

    def apply(self, everyone: bool, targets: Recipients, change: View | str) -> None:
        """An update: `change` a whole new card (View) or a button text (str)."""

        def updated(view: View) -> View:
            return view.replaced(change) if isinstance(change, str) else copy.deepcopy(change)

        if everyone or self.for_everyone(targets):
            self.everyone = updated(self.everyone)
            self.per_user, self.per_party, self.per_tag = {}, {}, {}
            return
        for userid in targets.users:
            self.per_user[userid.casefold()] = updated(self.view_of(userid))
        for party in targets.parties:
            self.per_party[party] = updated(self.per_party.get(party, self.everyone))
        for tag in targets.tags:
            self.per_tag[tag] = updated(self.per_tag.get(tag, self.everyone))

    def as_json(self) -> dict[str, Any]:
        def views(found: dict[str, View]) -> dict[str, Any]:
            return {k: v.as_json() for k, v in found.items()}

        return {
            "channel": self.channel,
            "task_id": self.task_id,
            "msgid": self.msgid,
            "recipients": self.recipients.as_json(),
            "card": self.everyone.card,
            "replaced_name": self.everyone.replaced_name,
            "per_user": views(self.per_user),
            "per_party": views(self.per_party),
            "per_tag": views(self.per_tag),
            "updates": self.updates,
            "clicks": self.clicks,
        }


@dataclass(frozen=True)
class Sent:
    """A message that went out: what `message/send` answered for it."""

    at: float
    msgid: str
    response_code: str


class State:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.current: dict[str, str] = {}  # channel -> its token now
        self.cards: dict[tuple[str, str], Card] = {}  # (channel, task_id): task_ids ever used
        self.codes: dict[str, Code] = {}
        self.recent: dict[tuple[str, str], Sent] = {}  # (channel, digest) -> the last send

    def token_for(self, channel: str, now: float) -> tuple[str, int]:
        """The channel's token and its seconds left: the same one while it lasts."""
        value = self.current.get(channel)
        token = self.tokens.get(value or "")
        if token is None or token.revoked or token.expires_at <= now:
            value = secrets.token_urlsafe(96)  # WeCom: "最长为512字节"
            token = self.tokens[value] = Token(channel, now + TOKEN_SECONDS)
            self.current[channel] = value
        return str(value), max(1, int(token.expires_at - now))

    def expire_tokens(self, channel: str | None) -> int:
        found = [t for t in self.tokens.values() if channel in (None, t.channel)]
        for token in found:
            token.revoked = True
        return len(found)

    def issue_code(self, card: Card, now: float, source: str, userid: str | None = None) -> str:
        seconds = SEND_CODE_SECONDS if source == "send" else CLICK_CODE_SECONDS
        value = secrets.token_urlsafe(32)
        self.codes[value] = Code(card.channel, card.task_id, source, userid, now, now + seconds)
        return value

    def duplicate(self, channel: str, digest: str, now: float, seconds: int) -> Sent | None:
        """The same message sent within `seconds` (WeCom's duplicate check), if any."""
        sent = self.recent.get((channel, digest))
        return sent if sent is not None and now - sent.at < seconds else None

    def forget_old(self, now: float, seconds: float) -> None:
        for key in [k for k, s in self.recent.items() if now - s.at >= seconds]:
            del self.recent[key]
