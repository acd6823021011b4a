"""What a click on an incident card does, whichever chat app it came from.

`CardActions.handle(click)`, run after the vendor has had its answer (the listener answers
first: WeCom waits 5 s, Feishu 3 s, DingTalk 2 s, Temporal may be slower):

1. once per click: the vendor's event id is set in Redis (`card_click_key`) before anything
   else, so a retried callback, or a second listener, acts once;
2. the button's key must be riskflow's (`ButtonKey`), the person known to the people
   directory by the ids the vendor sent, and allowed to operate at the incident's site;
3. the incident's Temporal update (`workers.incidents.client.act`: ack / dismiss / resolve),
   which the workflow refuses when it is not that incident's to take (closed, another
   incident of the camera); tried again while Temporal is unreachable, for
   `action_timeout_seconds`;
4. the card says what happened: to everyone when the incident changed ("认领: 王工 14:03"),
   to the clicker alone when the click changed nothing (and why).

Every outcome is a `ClickOutcome` (logged and counted by the listener); nothing raises out of
`handle` but a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.notify.texts import TEXTS
from activities.notify.wecom_card import answered_line
from riskflow.config.callbacks import CallbackSettings
from riskflow.config.console import Role
from riskflow.config.people import PeopleDirectory, Person, Vendor
from riskflow.config.sites import Language, SiteConfig
from riskflow.contracts.card_actions import ETA_MINUTES, ETA_QUESTION, ButtonKey, CardAction
from riskflow.contracts.incidents import IncidentView, OperatorAction
from riskflow.errors import IncidentActionRefused, IncidentNotFound
from riskflow.infra.redis import RedisClient
from riskflow.names import card_click_key
from workers.incidents.client import Action, act, show_incident

logger = logging.getLogger(__name__)

Result = Literal["acted", "duplicate", "refused", "failed"]
VENDOR_NAMES: dict[Vendor, str] = {"wecom": "WeCom", "feishu": "Feishu", "dingtalk": "DingTalk"}
_UPDATES: dict[CardAction, Action] = {
    "claim": "ack",
    "on_my_way": "ack",
    "false_alarm": "dismiss",
    "resolve": "resolve",
}
VIEW_WAIT_SECONDS = 5.0
_TRANSIENT = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
_REFUSALS: dict[Language, dict[str, str]] = {
    "en": {
        "stranger": "Not in riskflow's people directory",
        "forbidden": "Not allowed to act at this site",
        "refused": "Not changed: {why}",
        "failed": "Not changed: riskflow is unreachable, use the console",
    },
    "zh-CN": {
        "stranger": "未登记的人员, 不能处理",
        "forbidden": "无权处理此现场的事件",
        "refused": "未处理: {why}",
        "failed": "未处理: 系统暂不可用, 请在控制台处理",
    },
}


@dataclass(frozen=True)
class Click:
    """One button press as the vendor reported it: `event_id` names it (the same for the
    vendor's retries), `user_ids` the presser (kind -> id, as `PeopleDirectory.person`
    takes them), `key` the button's key, `selected` the card's choices (question -> option
    ids), `card_ref` what the vendor needs to update the card (WeCom: the task id and the
    click's single-use response code), `at` when it was pressed (epoch seconds)."""

    vendor: Vendor
    channel: str
    event_id: str
    user_ids: dict[str, str]
    key: str
    at: float
    selected: dict[str, list[str]] = field(default_factory=dict)
    card_ref: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClickOutcome:
    result: Result
    detail: str
    incident_id: str = ""
    person: str = ""


class Cards(Protocol):
    """How a vendor's card is told the outcome (`workers.callbacks.wecom.WeComCards`)."""

    async def answered(
        self, click: Click, line: str, incident_id: str, language: Language, closed: bool
    ) -> None: ...

    async def refused(self, click: Click, line: str) -> None: ...


class CardActions:
    """See the module docstring. `sites` gives a site id's language and time zone."""

    def __init__(
        self,
        client: Client,
        redis: RedisClient,
        people: PeopleDirectory,
        sites: Callable[[str], SiteConfig | None],
        cards: Cards,
        settings: CallbackSettings,
    ) -> None:
        self._client = client
        self._redis = redis
        self._people = people
        self._sites = sites
        self._cards = cards
        self._settings = settings

    async def first_time(self, click: Click) -> bool:
        """Whether this click was not acted on before (and now never will be again)."""
        key = card_click_key(click.channel, click.event_id)
        return bool(await self._redis.set(key, "1", nx=True, ex=self._settings.dedupe_seconds))

    async def handle(self, click: Click) -> ClickOutcome:
        if not await self.first_time(click):
            return ClickOutcome("duplicate", f"event {click.event_id} was acted on before")
        button = ButtonKey.decode(click.key)
        if button is None:
            return ClickOutcome("refused", f"not a riskflow button: {click.key[:80]!r}")
        person = self._people.person(click.vendor, dict(click.user_ids))
        try:
            view = await self._view(button.incident_id)
        except IncidentNotFound as exc:
            await self._tell_refused(click, "en", "refused", why=str(exc))
            return ClickOutcome("refused", str(exc), button.incident_id)
        language = self._language(view)
        if person is None:
            await self._tell_refused(click, language, "stranger")
            return ClickOutcome("refused", f"unknown {click.vendor} user {click.user_ids}")
        if not person.may(view.site_id, Role.OPERATOR):
            await self._tell_refused(click, language, "forbidden")
            detail = f"{person.id} may not operate at site {view.site_id}"
            return ClickOutcome("refused", detail, view.incident_id, person.id)
        return await self._act(click, button, person, view, language)

    async def _act(
        self, click: Click, button: ButtonKey, person: Person, view: IncidentView, lang: Language
    ) -> ClickOutcome:
        eta = self._eta(click) if button.action == "on_my_way" else None
        text = f"from {VENDOR_NAMES[click.vendor]}" + (f", arriving in {eta} min" if eta else "")
        action = OperatorAction(by=person.id, text=text)
        incident_id = view.incident_id
        try:
            await self._update(incident_id, _UPDATES[button.action], action)
        except IncidentActionRefused as exc:
            await self._tell_refused(click, lang, "refused", why=await self._why(exc, view, lang))
            return ClickOutcome("refused", str(exc), incident_id, person.id)
        except (RPCError, TimeoutError) as exc:
            logger.error("click %s on %s not applied: %s", click.event_id, incident_id, exc)
            await self._tell_refused(click, lang, "failed")
            return ClickOutcome("failed", str(exc), incident_id, person.id)
        line = answered_line(button.action, lang, person.name, self._clock(view, click.at), eta)
        closed = button.action in ("false_alarm", "resolve")
        await self._cards.answered(click, line, incident_id, lang, closed)
        return ClickOutcome("acted", f"{button.action} by {person.id}", incident_id, person.id)

    async def _view(self, incident_id: str) -> IncidentView:
        """The incident's view. Its card can be sent a moment before the view is first
        written (the message goes out first: an alarm never waits for Redis), so an unknown
        incident is looked for again for `VIEW_WAIT_SECONDS`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + VIEW_WAIT_SECONDS
        while True:
            try:
                return await show_incident(self._redis, incident_id)
            except IncidentNotFound:
                if loop.time() >= deadline:
                    raise
            await asyncio.sleep(0.2)

    async def _update(self, incident_id: str, action: Action, by: OperatorAction) -> None:
        """`act`, tried again while Temporal is unreachable, within the action timeout."""
        delay = 0.5
        async with asyncio.timeout(self._settings.action_timeout_seconds):
            while True:
                try:
                    await act(self._client, self._redis, incident_id, action, by)
                    return
                except RPCError as exc:
                    if exc.status not in _TRANSIENT:
                        raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _why(self, refusal: IncidentActionRefused, view: IncidentView, lang: Language) -> str:
        """Why the incident refused, in the site's language where it is its state."""
        with contextlib.suppress(IncidentNotFound):
            view = await show_incident(self._redis, view.incident_id)
        if not view.state.closed:
            return str(refusal)
        words = TEXTS[lang]
        return words.get(f"state:{view.state.value}", view.state.value)

    async def _tell_refused(
        self, click: Click, language: Language, kind: str, why: str = ""
    ) -> None:
        await self._cards.refused(click, _REFUSALS[language][kind].format(why=why[:60]))

    def _language(self, view: IncidentView) -> Language:
        site = self._sites(view.site_id)
        return site.language if site is not None else "en"

    def _clock(self, view: IncidentView, at: float) -> str:
        """`at` on the site's wall clock, HH:MM."""
        site = self._sites(view.site_id)
        try:
            zone = ZoneInfo(site.timezone if site is not None else "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        return datetime.fromtimestamp(at, UTC).astimezone(zone).strftime("%H:%M")

    @staticmethod
    def _eta(click: Click) -> int:
        """The minutes the presser picked (the first offer when none, or a strange one)."""
        picked = click.selected.get(ETA_QUESTION, [])
        offered = {str(n): n for n in ETA_MINUTES}
        return next((offered[p] for p in picked if p in offered), ETA_MINUTES[0])
