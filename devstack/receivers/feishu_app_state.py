"""What the Feishu app simulator remembers: tenant_access_tokens, the cards sent (as everyone
sees them now: JSON 2.0 cards are shared, `update_multi` true), and the `uuid`s of the last
hour. In memory; `State.clear` (on `POST /admin/reset`) forgets it all.

Lifetimes as documented: a token 7200 s, the same one while at least 30 min are left, then a
new one with the old still valid ("剩余有效期小于 30 分钟时…同时存在两个有效的
tenant_access_token", auth-v3 tenant_access_token_internal); a uuid one message an hour
("持有相同 uuid 的请求，在 1 小时内至多成功发送一条消息", im-v1 message create); a card
updatable and interactive for 14 days (message-card patch: 230031; JSON 2.0 release notes:
"卡片可交互和可更新时间统一为 14 天"); 5 updates a second per message (patch page).
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from devstack.receivers.feishu_app_card import Checked

TOKEN_SECONDS = 7200
RENEW_BELOW_SECONDS = 1800
UUID_SECONDS = 3600
CARD_SECONDS = 14 * 24 * 3600
PATCHES_PER_SECOND = 5


def tenant_key(app_id: str) -> str:
    """The tenant's key as events carry it (16 hex, like "736588c9260f175e")."""
    return hashlib.sha256(f"tenant:{app_id}".encode()).hexdigest()[:16]


@dataclass
class Token:
    channel: str
    expires_at: float
    revoked: bool = False  # POST /admin/feishu-app/expire-tokens: Feishu ended it early


@dataclass
class Message:
    """A card message: what everyone sees now, and what happened to it."""

    channel: str
    message_id: str
    receive_id_type: str
    receive_id: str
    chat_id: str
    uuid: str | None
    sent_at: float
    checked: Checked
    answer: dict[str, Any]  # the send's `data`, given again for a repeated uuid
    updates: list[dict[str, Any]] = field(default_factory=list)
    clicks: list[dict[str, Any]] = field(default_factory=list)
    toasts: list[dict[str, Any]] = field(default_factory=list)
    patched_at: list[float] = field(default_factory=list)

    def apply(self, checked: Checked, at: float, source: str) -> None:
        self.checked = checked
        self.updates.append({"at": at, "source": source, "card": copy.deepcopy(checked.card)})

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "message_id": self.message_id,
            "receive_id_type": self.receive_id_type,
            "receive_id": self.receive_id,
            "chat_id": self.chat_id,
            "uuid": self.uuid,
            "sent_at": self.sent_at,
            "card": self.checked.card,
            "pressable": sorted(k for k, t in self.checked.targets.items() if not t.disabled),
            "warnings": self.checked.warnings,
            "updates": self.updates,
            "clicks": self.clicks,
            "toasts": self.toasts,
        }


class State:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.current: dict[str, str] = {}  # channel -> its newest token
        self.messages: dict[str, Message] = {}
        self.uuids: dict[tuple[str, str], str] = {}  # (channel, uuid) -> message_id
        # channel -> the ids of the people seen pressing its cards: members of its chats, so
        # within the app's availability (its bot may write to them one to one)
        self.members: dict[str, set[str]] = {}

    def token_for(self, channel: str, now: float) -> tuple[str, int]:
        """The channel's token and its seconds left: the same one while ≥ 30 min are left."""
        value = self.current.get(channel, "")
        token = self.tokens.get(value)
        if token is None or token.revoked or token.expires_at - now < RENEW_BELOW_SECONDS:
            value = "t-" + secrets.token_hex(20)  # "t-caecc734c2e3328a62489fe0648c4b98779515d3"
            token = self.tokens[value] = Token(channel, now + TOKEN_SECONDS)
            self.current[channel] = value
        return value, int(token.expires_at - now)

    def expire_tokens(self, channel: str | None) -> int:
        found = [t for t in self.tokens.values() if channel in (None, t.channel)]
        for token in found:
            token.revoked = True
        return len(found)

    def repeated(self, channel: str, uuid: str | None, now: float) -> Message | None:
        """The message sent with this uuid within the hour, if any."""
        message_id = self.uuids.get((channel, uuid)) if uuid else None
        message = self.messages.get(message_id or "")
        if message is None or now - message.sent_at >= UUID_SECONDS:
            return None
        return message

    def add(self, message: Message) -> None:
        self.messages[message.message_id] = message
        if message.uuid:
            self.uuids[(message.channel, message.uuid)] = message.message_id

    @staticmethod
    def new_message_id() -> str:
        return "om_" + secrets.token_hex(16)  # "om_dc13264520392913993dd051dba21dcf"
