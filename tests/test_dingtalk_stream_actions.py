"""Answering an incident from its DingTalk card in Stream mode, end to end: the callback
listener opens a Stream connection to the DingTalk simulator's gateway
(devstack.receivers.dingtalk_stream), a click is pushed over it as DingTalk pushes it, acted
on through Temporal (dev server) once however often it is pushed, acknowledged, and the card
redrawn; a connection DingTalk closes is opened again; a click naming another corp or a card
riskflow did not send changes nothing. No public URL, no route registration."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from riskflow.config.channels import NotificationSettings
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import IncidentState
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.metrics import CARD_CLICKS
from tests import test_dingtalk_app_actions as ding
from tests.app_worlds import app_stack
from tests.conftest import DashScopeAdmin, eventually
from tests.test_incident_workflow import until

STREAMED = ding.CHANNELS.channels[ding.APP].model_copy(
    update={"callback_mode": "stream", "callback_route_key": None, "callback_api_secret": None}
)
CHANNELS = NotificationSettings(channels={ding.APP: STREAMED})


@dataclasses.dataclass
class World(ding.World):
    async def connections(self) -> list[dict[str, Any]]:
        url = f"{self.admin}/admin/dingtalk-app/connections?channel={ding.APP}"
        async with self.http.get(url) as r:
            found = await r.json()
            assert isinstance(found, list)
            return [c for c in found if not c.get("closing")]

    async def connected(self, other_than: frozenset[str] = frozenset()) -> str:
        found: list[str] = []

        async def one() -> bool:
            found[:] = [c["id"] for c in await self.connections() if c["id"] not in other_than]
            return bool(found)

        await eventually(one, within=30)
        return found[0]


@pytest.fixture
async def world(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    tmp_path: Path,
) -> AsyncIterator[World]:
    async with app_stack(
        client, settings, stack, task_queue, tmp_path, CHANNELS, ding.PEOPLE, ding.SITE, ""
    ) as s:
        world = World(s.receiver.url, s.http, s.sent, s.parts)
        await world.connected()
        yield world


def _clicks(result: str) -> float:
    return CARD_CLICKS.labels("dingtalk", result)._value.get()


@pytest.mark.timeout(120)
async def test_a_click_pushed_twice_over_the_stream_acts_once_and_redraws_the_card(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    handle, view, card = await ding.fall_told(world, client, task_queue, f"ds-{unique}")
    assert card["callback_type"] == "STREAM" and not card["warnings"], card
    acted, duplicates = _clicks("acted"), _clicks("duplicate")
    answer = await world.click(card, ding.WANG, "on_my_way", params={"eta": "15"}, deliveries=2)
    assert [d["acked"] for d in answer["deliveries"]] == [True, True], answer
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert view.acknowledged_by == "wang.gong"
    assert view.follow_up_at is not None and view.acknowledged_at is not None
    assert (view.follow_up_at - view.acknowledged_at).total_seconds() == 15 * 60

    async def claimed() -> bool:
        public = (await world.now(card["out_track_id"]))["public"]
        return public["state"] == "claimed" and "王工" in public["status"]

    await eventually(claimed, within=30)
    acks = [e for e in (await until(handle, lambda v: True)).timeline if e.kind == "acknowledged"]
    assert len(acks) == 1
    assert _clicks("acted") == acted + 1 and _clicks("duplicate") == duplicates + 1


@pytest.mark.timeout(120)
async def test_a_connection_dingtalk_closes_is_opened_again_and_clicks_still_act(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    first = await world.connected()
    url = f"{world.admin}/admin/dingtalk-app/stream/disconnect"
    async with world.http.post(url, json={"channel": ding.APP}) as r:
        assert r.status == 200
    second = await world.connected(other_than=frozenset({first}))
    assert second != first
    handle, _, card = await ding.fall_told(world, client, task_queue, f"ds-{unique}")
    await world.click(card, ding.WANG, "claim")
    await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)


@pytest.mark.timeout(120)
async def test_a_click_of_another_corp_or_card_is_acknowledged_and_changes_nothing(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    handle, _, card = await ding.fall_told(world, client, task_queue, f"ds-{unique}")
    rejected = _clicks("rejected")
    for tamper in ("corp", "track"):
        answer = await world.click(card, ding.WANG, "claim", tamper=tamper)
        # Acknowledged: refused for good, so DingTalk has no reason to push it again.
        assert [d["acked"] for d in answer["deliveries"]] == [True], answer
    assert _clicks("rejected") == rejected + 2
    assert (await until(handle, lambda v: True)).state == IncidentState.NOTIFIED
