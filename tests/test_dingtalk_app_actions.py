"""Answering an incident from its DingTalk card, end to end: the operator points the app's
callback route at the listener (`DingTalkApp.register`, what `riskflow callbacks register`
does), a real worker delivers the incident's card (riskflow's template, its variables) through
the DingTalk app simulator (devstack.receivers.dingtalk_app), a user's click comes back as
DingTalk sends it over HTTP (x-ddpaas-signature) to the real callback listener
(workers.callbacks), which acknowledges or closes the incident through Temporal (dev server)
and changes the card's variables for everyone; a click from somebody the people directory does
not allow changes nothing and is told why on that person's own view of the card. Valkey, the
local broker and the fake DashScope are real."""

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

from activities.notify.dingtalk_app import DingTalkApp
from activities.notify.http import fresh_connection_session
from riskflow.config.channels import NotificationSettings, local_receiver_url
from riskflow.config.incidents import EscalationStep, IncidentConfig
from riskflow.config.people import PeopleDirectory
from riskflow.config.settings import Settings
from riskflow.config.sites import SiteConfig
from riskflow.contracts.incidents import IncidentState, IncidentView
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.metrics import CARD_CLICKS
from riskflow.names import card_click_outbox_key
from tests.app_worlds import Parts, app_stack, fall_opened
from tests.conftest import DashScopeAdmin, eventually
from tests.test_incident_workflow import QUIET_CHECK, Recorder, until
from workers.callbacks.dingtalk_crypto import card_signature

APP = "ops-ding"
CORP, APP_KEY, API_SECRET = "ding5823corp", "dingriskflowkey", "route-api-secret"
GROUP = "cidOpsGroup=="
CHANNELS = NotificationSettings.model_validate(
    {
        "channels": {
            APP: {
                "type": "dingtalk_app",
                "app_key": APP_KEY,
                "secret": "ding-app-secret",
                "corp_id": CORP,
                "card_template_id": "riskflow-incident.schema",
                "open_conversation_ids": [GROUP],
                "to_users": ["duty01"],  # the on-duty person's robot chat
                "callback_route_key": "riskflow-clicks",
                "callback_api_secret": API_SECRET,
            }
        }
    }
)
PEOPLE = PeopleDirectory.model_validate(
    [
        {
            "id": "wang.gong",
            "name": "王工",
            "roles": {"plant-a": "operator"},
            "dingtalk": {"userid": "manager4220"},
        },
        {
            "id": "li.wei",
            "name": "李伟",
            "roles": {"plant-a": "viewer"},
            "dingtalk": {"userid": "li01"},
        },
        {
            "id": "zhao",
            "name": "赵工",
            "roles": {"plant-b": "operator"},
            "dingtalk": {"userid": "zhao02"},
        },
    ]
)
WANG, LI, ZHAO = "manager4220", "li01", "zhao02"
SITE = SiteConfig(id="plant-a", name="一号厂区", language="zh-CN", timezone="Asia/Shanghai")
LEVEL_0 = IncidentConfig(
    escalation=[EscalationStep(after_seconds=0, channels=[APP])],
    auto_resolve_after_seconds=QUIET_CHECK,
)


def seen_by(card: dict[str, Any], userid: str) -> dict[str, str]:
    """The card's variables as one person sees them: theirs over everyone's."""
    return {**card["public"], **(card.get("private") or {}).get(userid, {})}


@dataclass
class World:
    admin: str
    http: aiohttp.ClientSession
    sent: Recorder
    parts: Parts

    @property
    def callback_url(self) -> str:
        return self.parts.callback_url

    async def cards(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.admin}/admin/dingtalk-app/cards?channel={APP}") as r:
            assert r.status == 200
            found = await r.json()
            assert isinstance(found, list)
            return found

    async def card_of(self, incident_id: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        async def sent() -> bool:
            found[:] = [
                c for c in await self.cards() if c["public"].get("incident_id") == incident_id
            ]
            return bool(found)

        await eventually(sent, within=30)
        return found[0]

    async def now(self, track: str) -> dict[str, Any]:
        return next(c for c in await self.cards() if c["out_track_id"] == track)

    async def click(
        self, card: dict[str, Any], userid: str, action_id: str, **extra: Any
    ) -> dict[str, Any]:
        body = {
            "channel": APP,
            "out_track_id": card["out_track_id"],
            "userid": userid,
            "action_id": action_id,
            **extra,
        }
        async with self.http.post(f"{self.admin}/admin/dingtalk-app/click", json=body) as r:
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
    """The simulator (a receiver of its own), a worker whose notify activity sends to it, the
    callback listener on a free port and the route registered to it; incidents the test
    opened are terminated at the end."""
    path = f"/callbacks/dingtalk/{APP}"
    async with app_stack(
        client, settings, stack, task_queue, tmp_path, CHANNELS, PEOPLE, SITE, path
    ) as s:
        await register(s.receiver.url, s.parts.callback_url)
        yield World(s.receiver.url, s.http, s.sent, s.parts)


async def register(receiver_url: str, callback_url: str) -> None:
    base = local_receiver_url("dingtalk_app", APP, receiver_url)
    async with fresh_connection_session() as session:
        api = DingTalkApp(session, base, APP_KEY, "ding-app-secret", 10.0)
        await api.register("riskflow-clicks", callback_url, API_SECRET, force=False)


async def fall_told(
    world: World, client: Client, task_queue: str, camera: str
) -> tuple[WorkflowHandle[Any, Any], IncidentView, dict[str, Any]]:
    handle, view = await fall_opened(world.sent, client, task_queue, camera, LEVEL_0, SITE)
    return handle, view, await world.card_of(view.incident_id)


def _clicks(result: str) -> float:
    return CARD_CLICKS.labels("dingtalk", result)._value.get()


@pytest.mark.timeout(120)
async def test_on_my_way_then_resolved_from_the_dingtalk_card_act_and_everyone_sees_who(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    handle, view, card = await fall_told(world, client, task_queue, f"dt-{unique}")
    assert card["template"] == "riskflow-incident.schema" and not card["warnings"], card
    # One card in the group and in the on-duty person's robot chat: one update changes both.
    assert sorted(s["spaceType"] for s in card["spaces"]) == ["IM_GROUP", "IM_ROBOT"], card
    assert card["public"]["state"] == "open" and card["public"]["label_claim"] == "认领"
    acted, duplicates = _clicks("acted"), _clicks("duplicate")

    # The same request delivered five times: taken once, nothing acted on twice.
    answer = await world.click(card, WANG, "on_my_way", params={"eta": "10"}, deliveries=5)
    assert [d["status"] for d in answer["deliveries"]] == [200] * 5
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert view.acknowledged_by == "wang.gong"
    assert view.follow_up_at is not None and view.acknowledged_at is not None
    assert view.follow_up_at - view.acknowledged_at == timedelta(minutes=10)
    entry = next(e for e in view.timeline if e.kind == "acknowledged")
    assert "DingTalk" in entry.detail and "10 min" in entry.detail

    async def claimed() -> bool:
        return "王工" in (await world.now(card["out_track_id"]))["public"]["status"]

    await eventually(claimed, within=30)
    now = await world.now(card["out_track_id"])
    assert "预计 10 分钟到场" in now["public"]["status"] and now["public"]["state"] == "claimed"

    await world.click(card, WANG, "resolve")
    view = await until(handle, lambda v: v.state == IncidentState.RESOLVED)
    assert view.closed_by == "wang.gong"

    async def closed() -> bool:
        return (await world.now(card["out_track_id"]))["public"]["state"] == "closed"

    await eventually(closed, within=30)
    now = await world.now(card["out_track_id"])
    assert now["public"]["status"].startswith("已解除: 王工")
    assert _clicks("acted") == acted + 2 and _clicks("duplicate") == duplicates + 4
    acks = [e for e in (await until(handle, lambda v: True)).timeline if e.kind == "acknowledged"]
    assert len(acks) == 1


@pytest.mark.timeout(120)
async def test_refusals_show_on_the_pressers_own_card_and_a_false_alarm_asks_why(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    handle, view, card = await fall_told(world, client, task_queue, f"dt-{unique}")
    refused, rejected = _clicks("refused"), _clicks("rejected")
    track = card["out_track_id"]

    await world.click(card, LI, "false_alarm")  # a viewer of the site
    await world.click(card, ZHAO, "claim")  # an operator of another site
    for tamper in ("signature", "stale_timestamp", "corp", "track"):
        forged = await world.click(card, WANG, "claim", tamper=tamper)
        assert [d["status"] for d in forged["deliveries"]] == [400], (tamper, forged)

    async def told() -> bool:
        private = (await world.now(track)).get("private") or {}
        return {LI, ZHAO} <= set(private)

    await eventually(told, within=30)
    now = await world.now(track)
    for user in (LI, ZHAO):
        assert seen_by(now, user)["status"] == "无权处理此现场的事件"
    assert now["public"]["status"] == "" and now["public"]["state"] == "open"
    assert (await until(handle, lambda v: True)).state == IncidentState.NOTIFIED
    assert _clicks("refused") == refused + 2 and _clicks("rejected") == rejected + 4

    # False alarm asks the presser, alone, for the reason; the reason dismisses.
    await world.click(card, WANG, "false_alarm")

    async def asked() -> bool:
        return seen_by(await world.now(track), WANG).get("state") == "reasons"

    await eventually(asked, within=30)
    assert seen_by(await world.now(track), WANG)["status"] == "误报原因?"
    assert (await world.now(track))["public"]["state"] == "open"  # everyone else: unchanged
    await world.click(card, WANG, "false_alarm.drill")
    view = await until(handle, lambda v: v.state == IncidentState.DISMISSED)
    assert "false alarm: drill" in next(e for e in view.timeline if e.kind == "dismissed").detail

    async def dismissed() -> bool:
        return (await world.now(track))["public"]["state"] == "closed"

    await eventually(dismissed, within=30)
    now = await world.now(track)
    for user in (WANG, LI, ZHAO, "somebody-else"):  # the refusals told earlier are gone too
        seen = seen_by(now, user)
        assert seen["state"] == "closed" and seen["status"].startswith("误报(演练/测试): 王工")


@pytest.mark.timeout(180)
async def test_a_click_made_while_the_programs_restart_is_acted_on_when_they_are_back(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    handle, view, card = await fall_told(world, client, task_queue, f"dt-{unique}")
    await world.parts.stop_worker()
    answer = await world.click(card, WANG, "claim")
    assert [d["status"] for d in answer["deliveries"]] == [200]  # taken: Temporal has it
    await world.parts.stop_listener()
    await world.parts.start_listener()
    await world.parts.start_worker()
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert view.acknowledged_by == "wang.gong"

    async def claimed() -> bool:
        return (await world.now(card["out_track_id"]))["public"]["status"].startswith("认领: 王工")

    await eventually(claimed, within=60)


def signed_click(track: str, incident_id: str) -> tuple[dict[str, str], bytes]:
    """A Claim as DingTalk POSTs it to the route (headers, body)."""
    content = {"cardPrivateData": {"actionIds": ["claim"], "params": {"incident": incident_id}}}
    body = {
        "type": "actionCallback",
        "outTrackId": track,
        "corpId": CORP,
        "userId": WANG,
        "content": json.dumps(content),
    }
    timestamp = str(int(time.time() * 1000))
    headers = {
        "Content-Type": "application/json",
        "x-ddpaas-signature-timestamp": timestamp,
        "x-ddpaas-signature": card_signature(API_SECRET, timestamp),
    }
    return headers, json.dumps(body).encode()


@pytest.mark.timeout(120)
async def test_a_click_temporal_cannot_take_is_parked_answered_and_acted_on_later(
    world: World,
    client: Client,
    settings: Settings,
    redis: Redis,
    task_queue: str,
    unique: str,
) -> None:
    """DingTalk never delivers a card callback again: with Temporal stopped (SIGSTOP) the
    click is kept in the outbox and answered; once Temporal is back it acts. The same signed
    request again, even with another body, is a replay."""
    handle, view, card = await fall_told(world, client, task_queue, f"dt-{unique}")
    headers, body = signed_click(card["out_track_id"], view.incident_id)
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
    other = body.replace(b"claim", b"resolve")
    assert other != body
    async with world.http.post(world.callback_url, headers=headers, data=other) as r:
        assert (r.status, (await r.json())["code"]) == (400, "replayed")
    assert (await until(handle, lambda v: True)).state == IncidentState.ACKNOWLEDGED

    async def drained() -> bool:
        return await redis.hlen(outbox) == 0

    await eventually(drained, within=30)


@pytest.mark.timeout(120)
async def test_a_card_dingtalks_review_refuses_goes_without_the_models_words(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    """DingTalk's content review refuses the card's data (`param.contentUnsafe`, HTTP 400):
    the alarm still goes, as a card without the detector's and the model's words, with its
    buttons; a claim on it acts."""
    unsafe = {
        "channel": APP,
        "times": 1,
        "status": 400,
        "body": {"code": "param.contentUnsafe", "message": "param.contentUnsafe"},
    }
    async with world.http.post(f"{world.admin}/admin/faults", json={"faults": [unsafe]}) as r:
        assert r.status == 200
    handle, _, card = await fall_told(world, client, task_queue, f"dt-{unique}")
    assert card["public"]["title"] == "riskflow: 有事件待处理"
    assert card["public"]["summary"] == "" and card["public"]["fields"] == ""
    assert card["public"]["state"] == "open" and card["public"]["label_claim"] == "认领"
    await world.click(card, WANG, "claim")
    await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)


async def test_a_registered_route_is_changed_only_when_forced(world: World) -> None:
    """`riskflow callbacks register` without --force leaves a route already registered as it
    is and sees what DingTalk has: another URL, or another apiSecret (a rotated secret)."""
    base = local_receiver_url("dingtalk_app", APP, world.admin)
    async with fresh_connection_session() as session:
        api = DingTalkApp(session, base, APP_KEY, "ding-app-secret", 10.0)
        kept = await api.register("riskflow-clicks", world.callback_url, "rotated", force=False)
        assert kept == (world.callback_url, API_SECRET)  # unchanged: the old secret stays
        moved = await api.register("riskflow-clicks", "https://x.example/cb", "s2", force=True)
        assert moved == ("https://x.example/cb", "s2")
