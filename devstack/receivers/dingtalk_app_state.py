"""What the DingTalk app simulator remembers: access tokens, registered callback routes, and
card instances with their public data and each user's private data. In memory;
`State.clear` (on `POST /admin/reset`) forgets it all.

A token lasts 7200 s; asked again while it lasts, the same token comes back and its 7200 s
start again ("有效期内重复获取会返回相同结果并自动续期，过期后获取会返回新的accessToken",
open.dingtalk.com/document/development/obtain-the-access-token-of-an-internal-app).

Updates (/interactive-card-update-interface): `updateCardDataByKey` true merges the given
keys into the public data, false or absent replaces it ("不填默认覆盖更新"); the same for each
named user's private data with `updatePrivateDataByKey`. Users not named keep theirs (the
docs do not say; the simulator's reading).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from devstack.receivers.dingtalk_app_card import view
from devstack.receivers.dingtalk_app_requests import Space, Update

TOKEN_SECONDS = 7200


@dataclass
class Token:
    channel: str
    expires_at: float
    revoked: bool = False  # POST /admin/dingtalk-app/expire-tokens


@dataclass
class Route:
    """A `callbackRouteKey` registered by an app: where its cards' clicks go."""

    channel: str
    route_key: str
    url: str
    api_secret: str | None
    registered_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "callback_route_key": self.route_key,
            "callback_url": self.url,
            "api_secret": self.api_secret,
            "registered_at": self.registered_at,
        }


@dataclass(frozen=True)
class Delivered:
    """One `deliverResults` entry: the card reached the space, or `error`."""

    space: Space
    carrier_id: str
    error: str | None = None

    def answer(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "spaceType": self.space.space_type,
            "spaceId": self.space.space_id,
            "success": self.error is None,
        }
        if self.error is None:
            return found | {"carrierId": self.carrier_id}
        return found | {"errorMsg": self.error}


@dataclass
class Card:
    channel: str
    out_track_id: str
    template_id: str
    callback_type: str | None
    route_key: str | None
    delivered: list[Delivered]
    recipients: tuple[str, ...] | None  # a group card for these userIds only
    public: dict[str, str]
    private: dict[str, dict[str, str]] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    clicks: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def reaches(self, userid: str) -> bool:
        """Whether `userid` has the card: anyone in a group it reached (the simulator knows
        no members) unless `recipients` names them, or the user of a robot chat it reached."""
        for d in self.delivered:
            if d.error is not None:
                continue
            if d.space.space_type == "IM_ROBOT" and d.space.space_id == userid:
                return True
            if d.space.space_type == "IM_GROUP" and userid in (self.recipients or (userid,)):
                return True
        return False

    def view_of(self, userid: str) -> dict[str, str]:
        return view(self.public, self.private.get(userid))

    def apply(self, update: Update) -> None:
        if update.public is not None:
            base = self.public if update.public_by_key else {}
            self.public = {**base, **update.public}
        for userid, data in (update.private or {}).items():
            base = self.private.get(userid, {}) if update.private_by_key else {}
            self.private[userid] = {**base, **data}

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "out_track_id": self.out_track_id,
            "template": self.template_id,
            "callback_type": self.callback_type,
            "callback_route_key": self.route_key,
            "spaces": [d.answer() for d in self.delivered],
            "recipients": list(self.recipients) if self.recipients is not None else None,
            "public": self.public,
            "private": self.private,
            "updates": self.updates,
            "clicks": self.clicks,
            "warnings": self.warnings,
        }


class State:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.current: dict[str, str] = {}  # channel -> its token now
        self.routes: dict[tuple[str, str], Route] = {}  # (channel, callbackRouteKey)
        self.cards: dict[tuple[str, str], Card] = {}  # (channel, outTrackId): ids ever used

    def token_for(self, channel: str, now: float) -> str:
        """The channel's token, its 7200 s started again; a new one if it ended."""
        value = self.current.get(channel)
        token = self.tokens.get(value or "")
        if token is None or token.revoked or token.expires_at <= now:
            value = secrets.token_hex(16)  # like the docs' "fw8ef8we8f76e6f7s8dxxxx"
            token = self.tokens[value] = Token(channel, now)
            self.current[channel] = value
        token.expires_at = now + TOKEN_SECONDS
        return str(value)

    def expire_tokens(self, channel: str | None) -> int:
        found = [t for t in self.tokens.values() if channel in (None, t.channel)]
        for token in found:
            token.revoked = True
        return len(found)
