"""What a button on an incident card asks for, and how that travels in the button's key.

A card's buttons (`activities.notify.wecom_card`) each carry a key the chat app sends back
unchanged with the click (WeCom's `EventKey`, at most 1024 bytes): `rf1:<action>:<incident
id>`, or `rf1:false_alarm.<reason>:<incident id>` for a False alarm whose reason was picked
(False alarm alone asks the presser for the reason first). The key is not a secret and
proves nothing by itself; the callback listener trusts it because the vendor's signed,
encrypted callback delivered it (`workers.callbacks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, Field

from riskflow.config.people import Vendor
from riskflow.config.sites import Language

CardAction = Literal["claim", "on_my_way", "false_alarm", "resolve"]
CARD_ACTIONS: tuple[CardAction, ...] = get_args(CardAction)
KEY_PREFIX = "rf1"
MAX_KEY_BYTES = 1024
ETA_MINUTES = (5, 10, 15, 30)  # what "On my way" offers
ETA_QUESTION = "eta"  # the key of the ETA choice (WeCom: button_selection.question_key)
FalseAlarmReason = Literal["detector", "drill", "work", "other"]
REASONS: tuple[FalseAlarmReason, ...] = get_args(FalseAlarmReason)


@dataclass(frozen=True)
class ButtonKey:
    """A button's request: `action` on the incident `incident_id`; for a False alarm, the
    `reason` picked (None: not yet)."""

    action: CardAction
    incident_id: str
    reason: FalseAlarmReason | None = None

    def encode(self) -> str:
        """The key (see the module docstring); ValueError when it would pass
        `MAX_KEY_BYTES` or names a reason for another action."""
        if self.reason is not None and self.action != "false_alarm":
            raise ValueError("only a False alarm has a reason")
        action = self.action if self.reason is None else f"{self.action}.{self.reason}"
        key = f"{KEY_PREFIX}:{action}:{self.incident_id}"
        if len(key.encode()) > MAX_KEY_BYTES or not self.incident_id:
            raise ValueError(f"no button key fits incident id {self.incident_id[:80]!r}")
        return key

    @classmethod
    def decode(cls, key: str) -> ButtonKey | None:
        """The request a key carries; None for a key riskflow did not write."""
        prefix, _, rest = key.partition(":")
        named, _, incident_id = rest.partition(":")
        action, _, reason = named.partition(".")
        if prefix != KEY_PREFIX or action not in CARD_ACTIONS or not incident_id:
            return None
        if not reason:
            return cls(action, incident_id)
        if action != "false_alarm" or reason not in REASONS:
            return None
        return cls(action, incident_id, reason)


ClickResult = Literal["acted", "asked", "duplicate", "refused", "failed"]


class CardClick(BaseModel):
    """One button press as the vendor reported it (the input of `CardClickWorkflow`):
    `event_id` names it (the same for the vendor's retries of it), `user_ids` the presser
    (kind -> id, as `PeopleDirectory.person` takes them), `key` the button's key, `selected`
    the card's choices (question -> option ids), `card_ref` what the vendor needs to update
    the card (WeCom: `task_id` and the click's single-use `response_code`), `at` when it was
    pressed (epoch seconds)."""

    vendor: Vendor
    channel: str = Field(min_length=1, max_length=64)
    event_id: str = Field(min_length=1, max_length=128)
    user_ids: dict[str, str]
    key: str = Field(max_length=MAX_KEY_BYTES)
    at: float
    selected: dict[str, list[str]] = Field(default_factory=dict)
    card_ref: dict[str, str] = Field(default_factory=dict)


class ClickOutcome(BaseModel):
    """What a click did: `result` ("asked": the presser is asked for a False alarm's reason),
    a `detail` for logs, and what its card says now: `line` (empty: leave the card as it
    is), to `everyone` or to the clicker alone, `closed` when the incident closed (no
    buttons left), `reasons` when the presser's card turns into the choice of reasons, in
    the site's `language`."""

    result: ClickResult
    detail: str
    incident_id: str = ""
    person: str = ""
    line: str = ""
    everyone: bool = False
    closed: bool = False
    reasons: bool = False
    language: Language = "en"
