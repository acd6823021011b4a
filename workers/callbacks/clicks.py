"""What a click on an incident card does, whichever chat app it came from: the activities of
`workflows.card_click.CardClickWorkflow`, run by the callback listener's own worker.

`card_click_act`:
0. False alarm without a reason asks the presser for one (their card turns into the reasons);
1. the button's key must be riskflow's (`ButtonKey`; else nothing changes, not even the card);
2. the incident's view (looked for again for a few seconds: its card can arrive first);
3. the person known to the people directory by the ids the vendor sent, allowed to operate
   at the incident's site;
4. the incident's Temporal update (`workers.incidents.client.act`: ack / dismiss / resolve),
   which the workflow refuses when it is not that incident's to take (closed, another of the
   camera's incidents). Temporal or Redis away: the activity fails and is retried. A retry
   after an update that did land finds it done by the same person: acted, not refused.
The answer is a `ClickOutcome`: the line the card shows, to everyone when the incident
changed ("认领: 王工 14:03"), to the clicker alone when it did not (and why).

`card_click_tell`: the vendor's card update (`Cards`); a refusal of the update is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.notify.cards import answered_line, reason_question
from activities.notify.errors import Refused, Uncertain, application_error
from activities.notify.texts import TEXTS
from riskflow.config.console import Role
from riskflow.config.people import PeopleDirectory, Person
from riskflow.config.sites import Language, SiteConfig
from riskflow.contracts.card_actions import (
    ETA_MINUTES,
    ETA_QUESTION,
    ButtonKey,
    CardAction,
    CardClick,
    ClickOutcome,
)
from riskflow.contracts.incidents import IncidentState, IncidentView, OperatorAction
from riskflow.errors import IncidentActionRefused, IncidentNotFound
from riskflow.infra.metrics import CARD_CLICKS
from riskflow.infra.redis import RedisClient
from workers.incidents.client import Action, act, show_incident

VENDOR_NAMES = {"wecom": "WeCom", "feishu": "Feishu", "dingtalk": "DingTalk"}
VIEW_WAIT_SECONDS = 30.0  # within the activity's 60 s
CLICK_REJECTED = "CardClickRejected"  # an error retrying cannot fix (workflows.policies)
_UPDATES: dict[CardAction, Action] = {
    "claim": "ack",
    "on_my_way": "ack",
    "false_alarm": "dismiss",
    "resolve": "resolve",
}
_DONE: dict[CardAction, IncidentState] = {
    "claim": IncidentState.ACKNOWLEDGED,
    "on_my_way": IncidentState.ACKNOWLEDGED,
    "false_alarm": IncidentState.DISMISSED,
    "resolve": IncidentState.RESOLVED,
}
_TRANSIENT = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
_REFUSALS: dict[Language, dict[str, str]] = {
    "en": {
        "stranger": "Not in riskflow's people directory",
        "forbidden": "Not allowed to act at this site",
        "refused": "Not changed: {why}",
    },
    "zh-CN": {
        "stranger": "未登记的人员, 不能处理",
        "forbidden": "无权处理此现场的事件",
        "refused": "未处理: {why}",
    },
}


class Cards(Protocol):
    """How a vendor's card is told a click's outcome (`workers.callbacks.wecom.WeComCards`);
    raises `Refused` or `Uncertain` as the vendor's API does."""

    async def tell(self, click: CardClick, outcome: ClickOutcome) -> None: ...


class ClickActivities:
    """See the module docstring. `sites` gives a site id's language and time zone."""

    def __init__(
        self,
        client: Client,
        redis: RedisClient,
        people: PeopleDirectory,
        sites: Callable[[str], SiteConfig | None],
        cards: Cards,
    ) -> None:
        self._client = client
        self._redis = redis
        self._people = people
        self._sites = sites
        self._cards = cards

    @activity.defn(name="card_click_act")
    async def act(self, click: CardClick) -> ClickOutcome:
        outcome = await self._outcome(click)
        CARD_CLICKS.labels(click.vendor, outcome.result).inc()
        activity.logger.info(
            "%s click %s: %s %s (%s)",
            click.channel,
            click.event_id,
            outcome.result,
            outcome.incident_id,
            outcome.detail,
        )
        return outcome

    @activity.defn(name="card_click_tell")
    async def tell(self, click: CardClick, outcome: ClickOutcome) -> None:
        try:
            await self._cards.tell(click, outcome)
        except Refused as exc:
            raise application_error(click.channel, exc) from None
        except Uncertain as exc:
            raise ApplicationError(f"channel {click.channel!r}: {exc}") from None

    async def _outcome(self, click: CardClick) -> ClickOutcome:
        button = ButtonKey.decode(click.key)
        if button is None:
            return ClickOutcome(result="refused", detail=f"not riskflow's: {click.key[:80]!r}")
        person = self._people.person(click.vendor, dict(click.user_ids))
        try:
            view = await self._view(button.incident_id)
        except IncidentNotFound as exc:
            return self._refused(str(exc), "en", "refused", why=button.incident_id[:40])
        lang = self._language(view)
        if person is None:
            detail = f"unknown {click.vendor} user {click.user_ids}"
            return self._refused(detail, lang, "stranger", view)
        if not person.may(view.site_id, Role.OPERATOR):
            detail = f"{person.id} may not operate at site {view.site_id}"
            return self._refused(detail, lang, "forbidden", view, person)
        return await self._apply(click, button, person, view, lang)

    async def _apply(
        self,
        click: CardClick,
        button: ButtonKey,
        person: Person,
        view: IncidentView,
        lang: Language,
    ) -> ClickOutcome:
        if button.action == "false_alarm" and button.reason is None:  # why, first
            return ClickOutcome(
                result="asked",
                detail=f"{person.id} asked for a false alarm's reason",
                incident_id=view.incident_id,
                person=person.id,
                line=reason_question(lang),
                reasons=True,
                language=lang,
            )
        eta = self._eta(click) if button.action == "on_my_way" else None
        pressed = self._clock(view, click.at, seconds=True)  # it may act later (an outage)
        text = f"from {VENDOR_NAMES[click.vendor]}, pressed {pressed}"
        text += f", arriving in {eta} min" if eta else ""
        if button.reason is not None:
            text += f", false alarm: {button.reason}"
        try:
            await self._update(view.incident_id, _UPDATES[button.action], person, text, eta)
        except IncidentNotFound as exc:  # its view expired meanwhile
            return self._refused(str(exc), lang, "refused", view, person, why=str(exc))
        except IncidentActionRefused as exc:
            now = await self._current(view)
            if not _done_by(now, button.action, person, eta):
                why = self._why(now, lang) or str(exc)
                return self._refused(str(exc), lang, "refused", now, person, why=why)
        at = self._clock(view, click.at)
        closed = button.action in ("false_alarm", "resolve")
        return ClickOutcome(
            result="acted",
            detail=f"{button.action} by {person.id}",
            incident_id=view.incident_id,
            person=person.id,
            line=answered_line(button.action, lang, person.name, at, eta, button.reason),
            everyone=True,
            closed=closed,
            language=lang,
        )

    async def _update(
        self, incident_id: str, action: Action, person: Person, text: str, eta: int | None
    ) -> None:
        """The incident's update (an ETA starts its follow-up); an RPC error that retrying
        cannot fix ends the click."""
        by = OperatorAction(by=person.id, text=text, eta_minutes=eta)
        try:
            await act(self._client, self._redis, incident_id, action, by)
        except RPCError as exc:
            if exc.status in _TRANSIENT:
                raise
            raise ApplicationError(str(exc), type=CLICK_REJECTED, non_retryable=True) from None

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

    async def _current(self, view: IncidentView) -> IncidentView:
        with contextlib.suppress(IncidentNotFound):
            return await show_incident(self._redis, view.incident_id)
        return view

    def _refused(
        self,
        detail: str,
        lang: Language,
        kind: str,
        view: IncidentView | None = None,
        person: Person | None = None,
        why: str = "",
    ) -> ClickOutcome:
        return ClickOutcome(
            result="refused",
            detail=detail,
            incident_id=view.incident_id if view is not None else "",
            person=person.id if person is not None else "",
            line=_REFUSALS[lang][kind].format(why=why[:60]),
            language=lang,
        )

    def _why(self, view: IncidentView, lang: Language) -> str:
        """Why the incident refused, in the site's language: its state, and who took it
        there when that is a person of the directory ("已确认 (王工)"); "" when it is open."""
        if not (view.state.closed or view.state == IncidentState.ACKNOWLEDGED):
            return ""
        word = _state_word(view, lang)
        by = view.acknowledged_by if view.state == IncidentState.ACKNOWLEDGED else view.closed_by
        person = self._people.by_id(by)
        return f"{word} ({person.name})" if person is not None else word

    def _language(self, view: IncidentView) -> Language:
        site = self._sites(view.site_id)
        return site.language if site is not None else "en"

    def _clock(self, view: IncidentView, at: float, seconds: bool = False) -> str:
        """`at` on the site's wall clock, HH:MM (HH:MM:SS)."""
        site = self._sites(view.site_id)
        try:
            zone = ZoneInfo(site.timezone if site is not None else "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        shape = "%H:%M:%S" if seconds else "%H:%M"
        return datetime.fromtimestamp(at, UTC).astimezone(zone).strftime(shape)

    @staticmethod
    def _eta(click: CardClick) -> int:
        """The minutes the presser picked (the first offer when none, or a strange one)."""
        picked = click.selected.get(ETA_QUESTION, [])
        offered = {str(n): n for n in ETA_MINUTES}
        return next((offered[p] for p in picked if p in offered), ETA_MINUTES[0])


def _done_by(view: IncidentView, action: CardAction, person: Person, eta: int | None) -> bool:
    """Whether the incident already is where `action` by `person` takes it (an earlier
    attempt of this click landed): the same state, by the same person, with the same ETA."""
    if view.state != _DONE[action]:
        return False
    by = view.acknowledged_by if view.state == IncidentState.ACKNOWLEDGED else view.closed_by
    if by != person.id:
        return False
    if eta is None or view.acknowledged_at is None:
        return True
    return view.follow_up_at == view.acknowledged_at + timedelta(minutes=eta)


def _state_word(view: IncidentView, lang: Language) -> str:
    return TEXTS[lang].get(f"state:{view.state.value}", view.state.value)
