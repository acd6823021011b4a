"""An incident told on several chat apps at once: a click on one app's card shows on every
other card of the incident (workers.callbacks.cards), end to end: a worker sends level 0 to a
Feishu app and a DingTalk app (their simulators), a claim pressed on DingTalk redraws the
Feishu chats' cards, a resolve pressed on Feishu closes the DingTalk card; and an update
delayed by a retry never draws an earlier state over a later one (real Valkey)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from activities.notify import NotifyActivities
from activities.notify.http import fresh_connection_session
from activities.notify.texts import render
from devstack.localstack.process import free_port
from devstack.receivers.runtime import Receiver
from riskflow.config.channels import ChannelSecrets, NotificationSettings, local_receiver_url
from riskflow.config.incidents import EscalationStep, IncidentConfig
from riskflow.config.people import PeopleDirectory
from riskflow.config.settings import Settings
from riskflow.contracts.card_actions import CardClick, ClickOutcome
from riskflow.contracts.incidents import IncidentState
from riskflow.infra.endpoints import Endpoints
from riskflow.names import incident_cards_key
from tests import test_dingtalk_app_actions as ding
from tests import test_feishu_app_actions as fs
from tests.app_worlds import app_stack, fall_opened
from tests.conftest import DashScopeAdmin, eventually
from tests.test_incident_workflow import QUIET_CHECK, until
from tests.test_wecom_app_card import request
from workers.callbacks.cards import AppCards

CHANNELS = NotificationSettings(channels={**fs.CHANNELS.channels, **ding.CHANNELS.channels})
PEOPLE = PeopleDirectory.model_validate(
    [
        {
            "id": "wang.gong",
            "name": "王工",
            "roles": {"plant-a": "operator"},
            "feishu": fs.WANG,
            "dingtalk": {"userid": ding.WANG},
        }
    ]
)
LEVEL_0 = IncidentConfig(
    escalation=[EscalationStep(after_seconds=0, channels=[fs.APP, ding.APP])],
    auto_resolve_after_seconds=QUIET_CHECK,
)


@dataclasses.dataclass
class Both:
    feishu: fs.World
    dingtalk: ding.World


@pytest.fixture
async def both(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    tmp_path: Path,
) -> AsyncIterator[Both]:
    """One listener serves both apps; the Feishu world names its callback path, the DingTalk
    route is registered to the listener's."""
    path = f"/callbacks/feishu/{fs.APP}"
    async with app_stack(
        client, settings, stack, task_queue, tmp_path, CHANNELS, PEOPLE, fs.SITE, path
    ) as s:
        await ding.register(
            s.receiver.url, f"{s.parts.listener_base}/callbacks/dingtalk/{ding.APP}"
        )
        yield Both(
            fs.World(s.receiver.url, s.http, s.sent, s.parts, s.receiver.records),
            ding.World(s.receiver.url, s.http, s.sent, s.parts),
        )


@pytest.mark.timeout(120)
async def test_a_claim_on_dingtalk_shows_on_feishu_and_a_resolve_on_feishu_on_dingtalk(
    both: Both, client: Client, task_queue: str, unique: str
) -> None:
    sent = both.feishu.sent
    handle, view = await fall_opened(sent, client, task_queue, f"x-{unique}", LEVEL_0, fs.SITE)
    lark, card = (
        await both.feishu.card_of(view.incident_id),
        await both.dingtalk.card_of(view.incident_id),
    )

    await both.dingtalk.click(card, ding.WANG, "claim")
    await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)

    async def feishu_claimed() -> bool:
        cards = await both.feishu.of_incident(view.incident_id)
        return bool(cards) and all(fs.status_of(c).startswith("认领: 王工") for c in cards)

    await eventually(feishu_claimed, within=30)

    await both.feishu.click(lark, fs.WANG, "resolve")
    await until(handle, lambda v: v.state == IncidentState.RESOLVED)

    async def dingtalk_closed() -> bool:
        public = (await both.dingtalk.now(card["out_track_id"]))["public"]
        return public["state"] == "closed" and public["status"].startswith("已解除: 王工")

    await eventually(dingtalk_closed, within=30)


class Recording:
    """A vendor's card updates, recorded (`FeishuCards.redraw`'s shape)."""

    def __init__(self) -> None:
        self.drawn: list[tuple[str, str]] = []

    async def redraw(self, channel: str, card_id: str, outcome: ClickOutcome) -> None:
        self.drawn.append((card_id, outcome.line))


async def test_a_late_update_never_draws_an_earlier_state_over_a_later_one(
    redis: Redis, unique: str
) -> None:
    incident = f"inc-{unique}"
    await redis.hset(incident_cards_key(incident), mapping={"feishu|ops|om_1": "0"})
    feishu = Recording()
    cards = AppCards(None, feishu, None, redis)  # type: ignore[arg-type]
    click = CardClick(
        vendor="feishu",
        channel="ops",
        event_id=f"ev-{unique}",
        user_ids={"open_id": "ou_1"},
        key="",
        at=0,
        card_ref={"message_id": "om_1", "open_id": "ou_1"},
    )

    def outcome(line: str, closed: bool) -> ClickOutcome:
        return ClickOutcome(
            result="acted", detail="", incident_id=incident, line=line, everyone=True, closed=closed
        )

    await cards.tell(click, outcome("已解除: 王工 14:20", True))
    await cards.tell(click, outcome("认领: 王工 14:03", False))  # the claim's retry, late
    assert feishu.drawn == [("om_1", "已解除: 王工 14:20")]
    assert await redis.hget(incident_cards_key(incident), "feishu|ops|om_1") == b"2"


async def test_an_eta_run_out_reopens_the_earlier_cards_and_a_close_closes_them(
    redis: Redis, tmp_path: Path, unique: str
) -> None:
    """ "On my way, 5 min" and the camera still shows the fall when they run out: the "still
    present" message goes out, and the cards that said "on the way" show the incident open
    again, every button back; resolved from the console: the closing message closes them
    (Feishu and DingTalk; WeCom cards change only with a click)."""
    receiver = Receiver("127.0.0.1", free_port(), free_port(), tmp_path / "cert.pem")
    secrets = ChannelSecrets.from_config(CHANNELS, {})
    await receiver.start(CHANNELS, secrets)
    incident, key = f"cam1-hazard-{unique}", incident_cards_key(f"cam1-hazard-{unique}")
    try:
        async with fresh_connection_session() as session:
            notify = NotifyActivities(
                session,
                None,
                redis,
                CHANNELS,
                secrets,
                receiver.url,  # type: ignore[arg-type]
            )

            async def told(kind: str) -> None:
                for name in (fs.APP, ding.APP):
                    sent = request(
                        idempotency_key=f"{incident}:{kind}:{name}",
                        channel=name,
                        incident_id=incident,
                        kind=kind,
                    )
                    base = local_receiver_url(CHANNELS.channels[name].type, name, receiver.url)
                    await notify.apps.send(sent, render(sent), CHANNELS.channels[name], base)

            await told("opened")
            listed = [f.decode() for f in await redis.hkeys(key)]
            assert {f.split("|")[0] for f in listed} == {"feishu", "dingtalk"}
            for field in listed:  # claimed, as a click would have drawn them
                await redis.hset(key, field, "1")
            ids = {f.split("|")[0]: f.split("|")[2] for f in listed}
            await told("still_present")
            assert set((await redis.hgetall(key)).values()) == {b"0"}
            lark, ding_card = await _cards(receiver, ids)
            assert set(lark["pressable"]) == {"claim", "on_my_way", "false_alarm", "resolve"}
            assert fs.status_of(lark) != "" and ding_card["public"]["state"] == "open"

            await told("resolved")
            assert set((await redis.hgetall(key)).values()) == {b"2"}
            lark, ding_card = await _cards(receiver, ids)
            assert lark["pressable"] == [] and ding_card["public"]["state"] == "closed"
    finally:
        await receiver.stop()


async def _cards(receiver: Receiver, ids: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Feishu message and the DingTalk card of `ids` (vendor -> card id), as they are."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{receiver.url}/admin/feishu-app/cards?channel={fs.APP}") as r:
            messages = [m for m in await r.json() if m["message_id"] == ids["feishu"]]
        async with http.get(f"{receiver.url}/admin/dingtalk-app/cards?channel={ding.APP}") as r:
            cards = [c for c in await r.json() if c["out_track_id"] == ids["dingtalk"]]
    return messages[0], cards[0]
