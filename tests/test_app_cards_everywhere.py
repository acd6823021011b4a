"""An incident told on several chat apps at once: a click on one app's card shows on every
other card of the incident (workers.callbacks.cards), end to end: a worker sends level 0 to a
Feishu app and a DingTalk app (their simulators), a claim pressed on DingTalk redraws the
Feishu chats' cards, a resolve pressed on Feishu closes the DingTalk card; and an update
delayed by a retry never draws an earlier state over a later one (real Valkey)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from devstack.localstack.process import free_port
from devstack.receivers.runtime import Receiver
from riskflow.config.channels import ChannelSecrets, NotificationSettings
from riskflow.config.incidents import EscalationStep, IncidentConfig
from riskflow.config.people import PeopleDirectory
from riskflow.config.settings import Settings
from riskflow.contracts.card_actions import CardClick, ClickOutcome
from riskflow.contracts.incidents import IncidentState
from riskflow.infra.endpoints import Endpoints
from riskflow.names import incident_cards_key
from tests import test_dingtalk_app_actions as ding
from tests import test_feishu_app_actions as fs
from tests.conftest import DashScopeAdmin, eventually
from tests.test_incident_workflow import QUIET_CHECK, Recorder, fall, open_incident, until
from tests.test_wecom_app_actions import Parts
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
    receiver = Receiver("127.0.0.1", free_port(), free_port(), tmp_path / "smtp-cert.pem")
    await receiver.start(CHANNELS, ChannelSecrets.from_config(CHANNELS, {}))
    ours = settings.model_copy(
        update={"notifications": CHANNELS, "people": PEOPLE, "sites": [fs.SITE]}
    )
    endpoints = dataclasses.replace(stack, receiver=receiver.url)
    # One listener serves both apps; each world names its own vendor's callback path.
    parts = Parts(client, ours, endpoints, task_queue, callback_path=f"/callbacks/feishu/{fs.APP}")
    sent = Recorder()
    try:
        await parts.start_worker()
        await parts.start_listener()
        ding_url = parts.callback_url.replace(f"/feishu/{fs.APP}", f"/dingtalk/{ding.APP}")
        await ding.register(receiver.url, ding_url)
        async with aiohttp.ClientSession() as http:
            try:
                yield Both(
                    fs.World(receiver.url, http, sent, parts, receiver.records),
                    ding.World(receiver.url, http, sent, parts),
                )
            finally:
                for handle in sent.started:
                    with contextlib.suppress(Exception):
                        await handle.terminate("test over")
    finally:
        await parts.stop_listener()
        await parts.stop_worker()
        await receiver.stop()


@pytest.mark.timeout(120)
async def test_a_claim_on_dingtalk_shows_on_feishu_and_a_resolve_on_feishu_on_dingtalk(
    both: Both, client: Client, task_queue: str, unique: str
) -> None:
    frame = fall(f"x-{unique}", 1)
    handle = await open_incident(
        both.feishu.sent, client, task_queue, frame, LEVEL_0, fs.SITE.timezone, fs.SITE.language
    )
    view = await until(handle, lambda v: v.steps_sent == ["L0"])
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
