"""Answering an incident from its Feishu card, end to end: a real worker sends the incident's
card (card JSON 2.0) through the Feishu app simulator (devstack.receivers.feishu_app), a
user's click comes back as Feishu sends `card.action.trigger` (encrypted, signed) to the real
callback listener (workers.callbacks), which acknowledges or closes the incident through
Temporal (dev server) and redraws the shared card for everyone; a click from somebody the
people directory does not allow changes nothing and is told why by the app's bot, to that
person alone. Valkey, the local broker and the fake DashScope are real."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from temporalio.client import Client, WorkflowHandle

from devstack.receivers.records import Records
from riskflow.config.channels import NotificationSettings
from riskflow.config.incidents import EscalationStep, IncidentConfig
from riskflow.config.people import PeopleDirectory
from riskflow.config.settings import Settings
from riskflow.config.sites import SiteConfig
from riskflow.contracts.card_actions import ButtonKey
from riskflow.contracts.incidents import IncidentState, IncidentView
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.metrics import CARD_CLICKS
from riskflow.names import card_click_outbox_key
from tests.app_worlds import Parts, app_stack, fall_opened
from tests.conftest import DashScopeAdmin, eventually
from tests.test_incident_workflow import QUIET_CHECK, Recorder, fall, open_incident, until
from workers.callbacks.feishu_crypto import FeishuCrypto

APP = "ops-app"
APP_ID = "cli_a5riskflow"
TOKEN, ENCRYPT_KEY = "feishu-verification-token", "feishu-encrypt-key"
CHAT, NIGHT = "oc_ops_group", "oc_night_shift"
CHANNELS = NotificationSettings.model_validate(
    {
        "channels": {
            APP: {
                "type": "feishu_app",
                "app_id": APP_ID,
                "secret": "feishu-app-secret",
                "receive_ids": [CHAT, NIGHT],
                "callback_token": TOKEN,
                "callback_encrypt_key": ENCRYPT_KEY,
            }
        }
    }
)
WANG = {"open_id": "ou_wang", "union_id": "on_wang"}
LI = {"open_id": "ou_li", "union_id": "on_li"}
ZHAO = {"open_id": "ou_zhao", "union_id": "on_zhao"}
PEOPLE = PeopleDirectory.model_validate(
    [
        {"id": "wang.gong", "name": "王工", "roles": {"plant-a": "operator"}, "feishu": WANG},
        {"id": "li.wei", "name": "李伟", "roles": {"plant-a": "viewer"}, "feishu": LI},
        {"id": "zhao", "name": "赵工", "roles": {"plant-b": "operator"}, "feishu": ZHAO},
    ]
)
SITE = SiteConfig(id="plant-a", name="一号厂区", language="zh-CN", timezone="Asia/Shanghai")
LEVEL_0 = IncidentConfig(
    escalation=[EscalationStep(after_seconds=0, channels=[APP])],
    auto_resolve_after_seconds=QUIET_CHECK,
)


def _keys(node: Any) -> list[str]:
    """Every button key in a card, in order."""
    if isinstance(node, dict):
        found = [node["key"]] if isinstance(node.get("key"), str) else []
        return found + [k for v in node.values() for k in _keys(v)]
    if isinstance(node, list):
        return [k for v in node for k in _keys(v)]
    return []


def incident_of(message: dict[str, Any]) -> str:
    keys = [ButtonKey.decode(k) for k in _keys(message["card"])]
    return next((k.incident_id for k in keys if k is not None), "")


def status_of(message: dict[str, Any]) -> str:
    elements = message["card"]["body"]["elements"]
    found = [e["text"]["content"] for e in elements if e.get("element_id") == "status"]
    return found[0] if found else ""


@dataclass
class World:
    admin: str
    http: aiohttp.ClientSession
    sent: Recorder
    parts: Parts
    records: Records

    @property
    def callback_url(self) -> str:
        return self.parts.callback_url

    async def messages(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.admin}/admin/feishu-app/cards?channel={APP}") as r:
            assert r.status == 200
            found = await r.json()
            assert isinstance(found, list)
            return found

    async def card_of(self, incident_id: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        async def sent() -> bool:
            found[:] = [
                m
                for m in await self.messages()
                if incident_of(m) == incident_id and m["receive_id"] == CHAT
            ]
            return bool(found)

        await eventually(sent, within=30)
        return found[0]

    async def of_incident(self, incident_id: str) -> list[dict[str, Any]]:
        """Every card of the incident, in every chat (what each shows now)."""
        keyed = {m["message_id"] for m in await self.messages() if incident_of(m) == incident_id}
        return [m for m in await self.messages() if m["message_id"] in keyed]

    async def now(self, message_id: str) -> dict[str, Any]:
        return next(m for m in await self.messages() if m["message_id"] == message_id)

    async def told(self, open_id: str) -> list[str]:
        """What the bot wrote to one person, one to one."""
        mine = [m for m in await self.messages() if m["receive_id"] == open_id]
        return [json.dumps(m["card"], ensure_ascii=False) for m in mine]

    async def click(
        self, message: dict[str, Any], user: dict[str, str], element: str, **extra: Any
    ) -> dict[str, Any]:
        body = {
            "channel": APP,
            "message_id": message["message_id"],
            "element_id": element,
            "user": user,
            "callback_url": self.callback_url,
            **extra,
        }
        async with self.http.post(f"{self.admin}/admin/feishu-app/click", json=body) as r:
            answer = await r.json()
            assert r.status == 200, answer
            assert isinstance(answer, dict)
            return answer


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
    """The simulator (a receiver of its own), a worker whose notify activity sends to it, and
    the callback listener on a free port; incidents the test opened are terminated at the end."""
    path = f"/callbacks/feishu/{APP}"
    async with app_stack(
        client, settings, stack, task_queue, tmp_path, CHANNELS, PEOPLE, SITE, path
    ) as s:
        yield World(s.receiver.url, s.http, s.sent, s.parts, s.receiver.records)


async def fall_told(
    world: World, client: Client, task_queue: str, camera: str
) -> tuple[WorkflowHandle[Any, Any], IncidentView, dict[str, Any]]:
    handle, view = await fall_opened(world.sent, client, task_queue, camera, LEVEL_0, SITE)
    return handle, view, await world.card_of(view.incident_id)


def _clicks(result: str) -> float:
    return CARD_CLICKS.labels("feishu", result)._value.get()


@pytest.mark.timeout(120)
async def test_on_my_way_then_resolved_from_the_feishu_card_act_and_everyone_sees_who(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    # The check Feishu makes when an admin saves the callback URL: the challenge echoed.
    body = {"channel": APP, "callback_url": world.callback_url}
    async with world.http.post(f"{world.admin}/admin/feishu-app/verify-url", json=body) as r:
        check = await r.json()
    assert check["ok"] is True and check["status"] == 200, check

    handle, view, card = await fall_told(world, client, task_queue, f"fs-{unique}")
    assert card["receive_id"] == CHAT and not card["warnings"]
    assert set(card["pressable"]) == {"claim", "on_my_way", "false_alarm", "resolve"}
    acted, duplicates = _clicks("acted"), _clicks("duplicate")

    # On my way, 10 minutes picked, delivered five times with one event id: acts once.
    answer = await world.click(card, WANG, "on_my_way", option="10", deliveries=5)
    assert [d["status"] for d in answer["deliveries"]] == [200] * 5
    assert [d["error_code"] for d in answer["deliveries"]] == [None] * 5
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert view.acknowledged_by == "wang.gong"
    assert view.follow_up_at is not None and view.acknowledged_at is not None
    assert view.follow_up_at - view.acknowledged_at == timedelta(minutes=10)
    entry = next(e for e in view.timeline if e.kind == "acknowledged")
    assert "Feishu" in entry.detail and "10 min" in entry.detail

    async def claimed() -> bool:
        return "王工" in status_of(await world.now(card["message_id"]))

    await eventually(claimed, within=30)
    now = await world.now(card["message_id"])
    assert "预计 10 分钟到场" in status_of(now)
    assert set(now["pressable"]) == {"false_alarm", "resolve"}

    # Every other card of the incident (the other chat's, the assessment's) shows it too.
    async def everywhere() -> bool:
        cards = await world.of_incident(view.incident_id)
        return len(cards) >= 2 and all("预计 10 分钟到场" in status_of(c) for c in cards)

    await eventually(everywhere, within=30)
    cards = await world.of_incident(view.incident_id)
    assert {c["receive_id"] for c in cards} == {CHAT, NIGHT}

    await world.click(card, WANG, "resolve")
    view = await until(handle, lambda v: v.state == IncidentState.RESOLVED)
    assert view.closed_by == "wang.gong"

    async def closed() -> bool:
        return status_of(await world.now(card["message_id"])).startswith("已解除: 王工")

    await eventually(closed, within=30)

    async def closed_everywhere() -> bool:
        cards = await world.of_incident(view.incident_id)
        return all(status_of(c).startswith("已解除: 王工") for c in cards)

    await eventually(closed_everywhere, within=30)
    assert all(c["pressable"] == [] for c in await world.of_incident(view.incident_id))
    assert _clicks("acted") == acted + 2 and _clicks("duplicate") == duplicates + 4


@pytest.mark.timeout(120)
async def test_clicks_that_may_not_act_change_nothing_and_the_bot_tells_the_presser_why(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    handle, view, card = await fall_told(world, client, task_queue, f"fs-{unique}")
    refused, rejected = _clicks("refused"), _clicks("rejected")

    await world.click(card, LI, "false_alarm", option="drill")  # a viewer of the site
    await world.click(card, ZHAO, "claim")  # an operator of another site
    for tamper in ("signature", "stale_timestamp", "token", "app_id"):
        forged = await world.click(card, WANG, "claim", tamper=tamper)
        assert [d["status"] for d in forged["deliveries"]] == [400], (tamper, forged)

    async def told() -> bool:
        return bool(await world.told(LI["open_id"])) and bool(await world.told(ZHAO["open_id"]))

    await eventually(told, within=30)
    for person in (LI, ZHAO):
        (note,) = await world.told(person["open_id"])
        assert "无权处理此现场的事件" in note
    now = await world.now(card["message_id"])
    assert set(now["pressable"]) == {"claim", "on_my_way", "false_alarm", "resolve"}
    assert status_of(now) == ""  # everyone's card unchanged
    assert (await until(handle, lambda v: True)).state == IncidentState.NOTIFIED
    assert _clicks("refused") == refused + 2 and _clicks("rejected") == rejected + 4
    health_url = world.callback_url.split("/callbacks/")[0] + "/health"
    async with world.http.get(health_url) as r:
        assert (await r.json())["refused"] == {
            APP: {"bad_signature": 1, "stale": 1, "bad_token": 1, "wrong_receiver": 1}
        }

    # A false alarm with its reason, by somebody allowed: dismissed, the reason recorded.
    await world.click(card, WANG, "false_alarm", option="work")
    view = await until(handle, lambda v: v.state == IncidentState.DISMISSED)
    assert "false alarm: work" in next(e for e in view.timeline if e.kind == "dismissed").detail

    async def dismissed() -> bool:
        return status_of(await world.now(card["message_id"])).startswith("误报(已知作业): 王工")

    await eventually(dismissed, within=30)


@pytest.mark.timeout(180)
async def test_a_click_made_while_the_programs_restart_is_acted_on_when_they_are_back(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    handle, view, card = await fall_told(world, client, task_queue, f"fs-{unique}")
    await world.parts.stop_worker()
    answer = await world.click(card, WANG, "claim")
    assert [d["status"] for d in answer["deliveries"]] == [200]  # taken: Temporal has it
    await world.parts.stop_listener()
    await world.parts.start_listener()
    await world.parts.start_worker()
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert view.acknowledged_by == "wang.gong"

    async def claimed() -> bool:
        return status_of(await world.now(card["message_id"])).startswith("认领: 王工")

    await eventually(claimed, within=60)


def sealed_click(message_id: str, key: str) -> tuple[dict[str, str], bytes]:
    """A click's POST as Feishu makes it for the world's app (headers, body)."""
    callback = {
        "schema": "2.0",
        "header": {
            "event_id": f"ev-{time.time_ns()}",
            "token": TOKEN,
            "create_time": str(time.time_ns() // 1000),
            "event_type": "card.action.trigger",
            "tenant_key": "tk",
            "app_id": APP_ID,
        },
        "event": {
            "operator": {"tenant_key": "tk", **WANG},
            "token": "c-1",
            "action": {"value": {"key": key}, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": message_id, "open_chat_id": CHAT},
        },
    }
    crypto = FeishuCrypto(ENCRYPT_KEY, TOKEN)
    body, timestamp, nonce = crypto.seal(callback), str(int(time.time())), "n0nce"
    headers = {
        "Content-Type": "application/json",
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": crypto.sign(timestamp, nonce, body),
    }
    return headers, body


@pytest.mark.timeout(120)
async def test_a_click_temporal_cannot_take_is_parked_answered_and_acted_on_later(
    world: World,
    client: Client,
    settings: Settings,
    redis: Redis,
    task_queue: str,
    unique: str,
) -> None:
    """Feishu never delivers a card callback again: with Temporal stopped (SIGSTOP) the click
    is kept in the outbox and answered; once Temporal is back it acts. The same bytes again
    are a replay."""
    handle, view, card = await fall_told(world, client, task_queue, f"fs-{unique}")
    headers, body = sealed_click(card["message_id"], ButtonKey("claim", view.incident_id).encode())
    outbox = card_click_outbox_key(f"{task_queue}-clicks")
    pid = int((settings.local.state_dir / "pids" / "temporal.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        async with world.http.post(world.callback_url, headers=headers, data=body) as r:
            answered = (r.status, await r.json())
        parked = await redis.hlen(outbox)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert answered == (200, {}) and parked == 1
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert view.acknowledged_by == "wang.gong"
    async with world.http.post(world.callback_url, headers=headers, data=body) as r:
        assert (r.status, await r.json()) == (200, {})  # the same request again: taken once
    acks = [e for e in (await until(handle, lambda v: True)).timeline if e.kind == "acknowledged"]
    assert len(acks) == 1

    async def drained() -> bool:
        return await redis.hlen(outbox) == 0

    await eventually(drained, within=30)


@pytest.mark.timeout(120)
async def test_a_chat_out_of_reach_does_not_keep_the_card_from_the_others(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    """The bot was removed from one chat (Feishu answers 230002 with HTTP 400): the other
    chat still gets the incident's card, and level 0 counts as told."""
    removed = {
        "channel": APP,
        "times": 1,
        "status": 400,
        "body": {"code": 230002, "msg": "Bot/User can NOT be out of the chat."},
    }
    async with world.http.post(f"{world.admin}/admin/faults", json={"faults": [removed]}) as r:
        assert r.status == 200
    frame = fall(f"fs-{unique}", 1)
    handle = await open_incident(
        world.sent, client, task_queue, frame, LEVEL_0, SITE.timezone, SITE.language
    )
    view = await until(handle, lambda v: v.steps_sent == ["L0"])

    async def one_chat() -> bool:
        return bool(await world.of_incident(view.incident_id))

    await eventually(one_chat, within=30)
    assert view.state == IncidentState.NOTIFIED
    assert [f.times for f in world.records.faults] == [0]  # one chat was out of reach
