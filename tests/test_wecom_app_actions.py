"""Answering an incident from its WeCom card, end to end: a real worker sends the incident's
card through the WeCom app simulator (devstack.receivers.wecom_app), a member's click comes
back encrypted and signed to the real callback listener (workers.callbacks), which
acknowledges or closes the incident through Temporal (dev server) and updates the card for
everyone; a click from somebody the people directory does not allow changes nothing and is
told why on that person's card. Valkey, the local broker and the fake DashScope are real."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
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
from riskflow.config.channels import NotificationSettings, WeComAppChannel
from riskflow.config.incidents import EscalationStep, IncidentConfig
from riskflow.config.people import PeopleDirectory
from riskflow.config.settings import Settings
from riskflow.config.sites import SiteConfig
from riskflow.contracts.card_actions import ButtonKey, CardAction, FalseAlarmReason
from riskflow.contracts.incidents import IncidentState, IncidentView
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.metrics import CARD_CLICKS
from riskflow.names import card_click_outbox_key, card_click_workflow_id
from tests.app_worlds import Parts, app_stack, fall_opened
from tests.conftest import DashScopeAdmin, cli_env, eventually
from tests.test_incident_workflow import QUIET_CHECK, Recorder, until
from workers.callbacks.wecom_crypto import WeComCrypto

APP = "shift-app"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
APP_SPEC = {  # literal secrets: the simulator's
    "type": "wecom_app",
    "corp_id": "ww5823bf96d3bd56c7",
    "agent_id": 1000002,
    "secret": "app-secret",
    "to_users": ["WangGong", "LiWei", "Zhao", "MaLi"],
    "callback_token": "cb-token",
    "callback_aes_key": AES_KEY,
}
CHANNELS = NotificationSettings.model_validate({"channels": {APP: APP_SPEC}})
PEOPLE = PeopleDirectory.model_validate(
    [
        {
            "id": "wang.gong",
            "name": "王工",
            "roles": {"plant-a": "operator"},
            "wecom": {"userid": "WangGong"},
        },
        {
            "id": "li.wei",
            "name": "李伟",
            "roles": {"plant-a": "viewer"},
            "wecom": {"userid": "LiWei"},
        },
        {
            "id": "zhao",
            "name": "赵工",
            "roles": {"plant-b": "operator"},
            "wecom": {"userid": "Zhao"},
        },
        {
            "id": "ma.li",
            "name": "马丽",
            "roles": {"plant-a": "operator"},
            "wecom": {"userid": "MaLi"},
        },
    ]
)
SITE = SiteConfig(id="plant-a", name="一号厂区", language="zh-CN", timezone="Asia/Shanghai")
LEVEL_0 = IncidentConfig(
    escalation=[EscalationStep(after_seconds=0, channels=[APP])],
    auto_resolve_after_seconds=QUIET_CHECK,
)


@dataclass
class World:
    """The pieces of one test: the simulator's admin base, the listener's callback URL."""

    admin: str
    callback_url: str
    http: aiohttp.ClientSession
    sent: Recorder
    records: Records
    parts: Parts

    async def cards(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.admin}/admin/wecom-app/cards?channel={APP}") as r:
            assert r.status == 200
            found = await r.json()
            assert isinstance(found, list)
            return found

    async def card_of(self, incident_id: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        async def sent() -> bool:
            found[:] = [c for c in await self.cards() if _incident_of(c) == incident_id]
            return bool(found)

        await eventually(sent, within=30)
        return found[0]

    async def admin_post(self, path: str, body: dict[str, Any]) -> None:
        async with self.http.post(f"{self.admin}{path}", json=body) as r:
            assert r.status == 200, await r.text()

    async def by_task(self, task_id: str) -> dict[str, Any]:
        """The card as it is now (after updates its buttons may be gone)."""
        return next(c for c in await self.cards() if c["task_id"] == task_id)

    async def click(
        self,
        card: dict[str, Any],
        userid: str,
        action: CardAction,
        reason: FalseAlarmReason | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        key = ButtonKey(action, _incident_of(card), reason).encode()
        body = {
            "channel": APP,
            "task_id": card["task_id"],
            "userid": userid,
            "event_key": key,
            "callback_url": self.callback_url,
            **extra,
        }
        async with self.http.post(f"{self.admin}/admin/wecom-app/click", json=body) as r:
            answer = await r.json()
            assert r.status == 200, answer
            assert isinstance(answer, dict)
            return answer


def _incident_of(card: dict[str, Any]) -> str:
    buttons = card["card"].get("button_list") or []
    keys = [ButtonKey.decode(b.get("key", "")) for b in buttons]
    return next((k.incident_id for k in keys if k is not None), "")


def click_id(
    card: dict[str, Any], userid: str, answer: dict[str, Any], action: CardAction = "claim"
) -> str:
    """The workflow id the listener gives a click (`card_click_workflow_id` of its event id:
    userid, CreateTime, task id, key; workers.callbacks.wecom)."""
    key = ButtonKey(action, _incident_of(card)).encode()
    text = f"{userid}\n{answer['create_time']}\n{card['task_id']}\n{key}"
    return card_click_workflow_id(APP, hashlib.sha256(text.encode()).hexdigest()[:40])


def _clicks(result: str) -> float:
    return CARD_CLICKS.labels("wecom", result)._value.get()


@contextlib.asynccontextmanager
async def wecom_world(
    client: Client, settings: Settings, stack: Endpoints, task_queue: str, tmp: Path
) -> AsyncIterator[World]:
    """The simulator (a receiver of its own), a worker whose notify activity sends to it, and
    the callback listener on a free port; incidents the test opened are terminated at the end."""
    path = f"/callbacks/wecom/{APP}"
    async with app_stack(
        client, settings, stack, task_queue, tmp, CHANNELS, PEOPLE, SITE, path
    ) as s:
        yield World(
            s.receiver.url, s.parts.callback_url, s.http, s.sent, s.receiver.records, s.parts
        )


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
    """The WeCom world of one test (a clean Valkey, the fake DashScope's faults reset)."""
    async with wecom_world(client, settings, stack, task_queue, tmp_path) as built:
        yield built


async def fall_told(
    world: World, client: Client, task_queue: str, camera: str
) -> tuple[WorkflowHandle[Any, Any], IncidentView, dict[str, Any]]:
    handle, view = await fall_opened(world.sent, client, task_queue, camera, LEVEL_0, SITE)
    return handle, view, await world.card_of(view.incident_id)


@pytest.mark.timeout(120)
async def test_a_claim_then_resolved_from_the_card_act_on_the_incident_and_everyone_sees_who(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    handle, view, card = await fall_told(world, client, task_queue, f"wx-{unique}")
    shown = card["card"]
    assert shown["card_type"] == "button_interaction" and card["recipients"]
    assert [b["text"] for b in shown["button_list"]] == ["认领", "马上到", "误报", "已解除"]
    acted, duplicates = _clicks("acted"), _clicks("duplicate")

    # "On my way, 10 minutes", delivered twice (WeCom's retry): one acknowledgement.
    picked = [{"question_key": "eta", "option_ids": ["10"]}]
    answer = await world.click(card, "WangGong", "on_my_way", selected=picked, deliveries=2)
    assert [d["status"] for d in answer["deliveries"]] == [200, 200]
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert view.acknowledged_by == "wang.gong"
    assert view.follow_up_at is not None and view.acknowledged_at is not None
    assert view.follow_up_at - view.acknowledged_at == timedelta(minutes=10)  # the ETA
    entry = next(e for e in view.timeline if e.kind == "acknowledged")
    assert entry.actor == "wang.gong" and "WeCom" in entry.detail and "10 min" in entry.detail

    async def claimed() -> bool:
        now = (await world.by_task(card["task_id"]))["card"]
        return "王工" in now["main_title"].get("desc", "")

    await eventually(claimed, within=30)
    now = (await world.by_task(card["task_id"]))["card"]
    assert "预计 10 分钟到场" in now["main_title"]["desc"]
    assert [b["text"] for b in now["button_list"]] == ["误报", "已解除"]

    # Somebody else claims too late, and Wang names another ETA: neither changes the
    # incident, and each is told why on their own card (the others' stays as it is).
    # The incident's other card (the assessment's message) still offers Claim.
    cards = [c for c in await world.cards() if _incident_of(c) == view.incident_id]
    other = next(c for c in cards if c["task_id"] != card["task_id"])
    await world.click(other, "MaLi", "claim")
    later = [{"question_key": "eta", "option_ids": ["30"]}]
    await world.click(other, "WangGong", "on_my_way", selected=later)

    async def refused() -> bool:
        per_user = (await world.by_task(other["task_id"])).get("per_user") or {}
        return {"mali", "wanggong"} <= set(per_user)

    await eventually(refused, within=30)
    per_user = (await world.by_task(other["task_id"]))["per_user"]
    assert per_user["mali"]["replaced_name"] == "未处理: 已确认 (王工)"
    assert per_user["wanggong"]["replaced_name"] == "未处理: 已确认 (王工)"
    acked = await until(handle, lambda v: True)
    assert acked.follow_up_at == acked.acknowledged_at + timedelta(minutes=10)

    await world.click(card, "wanggong", "resolve")  # WeCom userids: any case
    view = await until(handle, lambda v: v.state == IncidentState.RESOLVED)
    assert view.closed_by == "wang.gong"

    async def replaced() -> bool:
        name = (await world.by_task(card["task_id"])).get("replaced_name") or ""
        return name.startswith("已解除: 王工")

    await eventually(replaced, within=30)
    assert _clicks("acted") == acted + 2 and _clicks("duplicate") == duplicates + 1


@pytest.mark.timeout(120)
async def test_clicks_that_may_not_act_change_nothing_and_say_why_to_the_clicker_alone(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    # The check WeCom makes when an admin saves the receive URL: the echostr, decrypted.
    body = {"channel": APP, "callback_url": world.callback_url}
    async with world.http.post(f"{world.admin}/admin/wecom-app/verify-url", json=body) as r:
        check = await r.json()
    assert check["ok"] is True and check["status"] == 200, check
    handle, view, card = await fall_told(world, client, task_queue, f"wx-{unique}")
    refused, rejected = _clicks("refused"), _clicks("rejected")

    # A viewer of the site, an operator of another site: refused, told on their card.
    await world.click(card, "LiWei", "false_alarm")
    await world.click(card, "Zhao", "claim")
    # A forged callback (bad signature) is refused before anything is read.
    forged = await world.click(card, "WangGong", "resolve", tamper="signature")
    assert [d["status"] for d in forged["deliveries"]] == [400]

    async def told() -> bool:
        now = await world.by_task(card["task_id"])
        per_user = now.get("per_user") or {}
        return {"liwei", "zhao"} <= set(per_user)  # WeCom keeps userids lower-cased

    await eventually(told, within=30)
    now = await world.by_task(card["task_id"])
    for user in ("liwei", "zhao"):
        assert now["per_user"][user]["replaced_name"] == "无权处理此现场的事件", now
    assert now.get("replaced_name") is None  # everyone else still has the buttons
    assert (await until(handle, lambda v: True)).state == IncidentState.NOTIFIED
    assert _clicks("refused") == refused + 2 and _clicks("rejected") == rejected + 1

    # A click on the card of an incident that closed meanwhile changes nothing either.
    await handle.execute_update("resolve", {"by": "console-user", "incident_id": view.incident_id})
    await world.click(card, "WangGong", "claim")

    async def closed_told() -> bool:
        per_user = (await world.by_task(card["task_id"])).get("per_user") or {}
        return "wanggong" in per_user

    await eventually(closed_told, within=30)
    line = (await world.by_task(card["task_id"]))["per_user"]["wanggong"]["replaced_name"]
    assert line == "未处理: 已解除", line
    assert (await until(handle, lambda v: True)).closed_by == "console-user"


@pytest.mark.timeout(120)
async def test_an_expired_token_and_a_busy_wecom_delay_the_card_but_lose_nothing(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    """Tokens die early (42001: fetched again, the call made once more), and WeCom answers
    -1 "system busy" to a send (retried by Temporal) and to a card update (retried by the
    listener with the same single-use response code)."""
    handle, _, card = await fall_told(world, client, task_queue, f"wx-{unique}")
    await world.admin_post("/admin/wecom-app/expire-tokens", {})
    busy = {
        "channel": APP,
        "times": 1,
        "status": 200,
        "body": {"errcode": -1, "errmsg": "busy"},
    }
    await world.admin_post("/admin/faults", {"faults": [busy]})
    await world.click(card, "WangGong", "claim")
    await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)

    async def claimed() -> bool:
        now = (await world.by_task(card["task_id"]))["card"]
        return now["main_title"].get("desc", "").startswith("认领: 王工")

    await eventually(claimed, within=30)
    updates = (await world.by_task(card["task_id"]))["updates"]
    assert len(updates) == 1  # the busy answer changed nothing; the retry did
    assert [f.times for f in world.records.faults] == [0]  # it was answered busy once

    # The next message of another incident: a new token, a busy first answer, then sent.
    await world.admin_post("/admin/wecom-app/expire-tokens", {})
    await world.admin_post("/admin/faults", {"faults": [busy]})
    _, _, second = await fall_told(world, client, task_queue, f"wx2-{unique}")
    assert second["task_id"] != card["task_id"]
    assert [f.times for f in world.records.faults] == [0]


@pytest.mark.timeout(180)
async def test_a_click_made_while_the_programs_restart_is_acted_on_when_they_are_back(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    """The incident's worker is down when Claim is pressed, and the listener stops right
    after taking the click: both come back, and the click acts once, the card updated."""
    handle, view, card = await fall_told(world, client, task_queue, f"wx-{unique}")
    await world.parts.stop_worker()
    answer = await world.click(card, "WangGong", "claim")
    assert [d["status"] for d in answer["deliveries"]] == [200]  # taken: Temporal has it
    await world.parts.stop_listener()
    clicked = client.get_workflow_handle(click_id(card, "WangGong", answer))
    described = await clicked.describe()
    assert described.status is not None and described.status.name == "RUNNING"
    await world.parts.start_listener()
    await world.parts.start_worker()
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert view.acknowledged_by == "wang.gong"

    async def claimed() -> bool:
        now = (await world.by_task(card["task_id"]))["card"]
        return now["main_title"].get("desc", "").startswith("认领: 王工")

    await eventually(claimed, within=60)
    acked = [e for e in (await until(handle, lambda v: True)).timeline if e.kind == "acknowledged"]
    assert len(acked) == 1


@pytest.mark.timeout(240)
async def test_a_click_made_while_the_incident_worker_is_killed_9_acts_when_it_returns(
    world: World, settings: Settings, client: Client, task_queue: str, tmp_path: Path, unique: str
) -> None:
    """The incident worker is a process of its own (`riskflow worker run`), killed with -9
    after the card went out; Claim is pressed while it is down: the listener takes the
    click, and when a worker is back the incident is acknowledged, once, and the card
    updated."""
    await world.parts.stop_worker()  # the in-process one: this test's worker is a process
    env = {
        **cli_env(settings),
        "RISKFLOW_TEMPORAL__TASK_QUEUE": task_queue,
        "RISKFLOW_METRICS__ENABLED": "false",
        "RISKFLOW_NOTIFICATIONS": json.dumps({"channels": {APP: APP_SPEC}}),
        "RISKFLOW_LOCAL__RECEIVER_PORT": world.admin.rsplit(":", 1)[1],
    }
    workers: list[asyncio.subprocess.Process] = []

    async def spawn() -> None:
        log = tmp_path / f"worker-{len(workers)}.log"
        workers.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cli",
                "worker",
                "run",
                env=env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
        )

        async def polling() -> bool:
            assert workers[-1].returncode is None, log.read_text(errors="replace")[-2000:]
            return b"worker on " in log.read_bytes()

        await eventually(polling, within=120)

    await spawn()
    try:
        handle, view, card = await fall_told(world, client, task_queue, f"wx-{unique}")
        workers[-1].send_signal(signal.SIGKILL)
        await workers[-1].wait()
        answer = await world.click(card, "WangGong", "claim")
        assert [d["status"] for d in answer["deliveries"]] == [200]  # taken meanwhile
        await spawn()
        view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
        assert view.acknowledged_by == "wang.gong"

        async def claimed() -> bool:
            now = (await world.by_task(card["task_id"]))["card"]
            return now["main_title"].get("desc", "").startswith("认领: 王工")

        await eventually(claimed, within=60)
        acked = await until(handle, lambda v: True)
        assert [e.kind for e in acked.timeline].count("acknowledged") == 1
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.send_signal(signal.SIGKILL)
                await worker.wait()


@pytest.mark.timeout(120)
async def test_a_false_alarm_asks_the_presser_why_then_dismisses_with_that_reason(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    handle, view, card = await fall_told(world, client, task_queue, f"wx-{unique}")
    await world.click(card, "WangGong", "false_alarm")

    async def asked() -> bool:
        mine = (await world.by_task(card["task_id"])).get("per_user", {}).get("wanggong")
        return mine is not None and mine["card"]["main_title"].get("desc") == "误报原因?"

    await eventually(asked, within=30)
    now = await world.by_task(card["task_id"])
    reasons = [b["text"] for b in now["per_user"]["wanggong"]["card"]["button_list"]]
    assert reasons == ["误检", "演练/测试", "已知作业", "其他"]
    assert now["card"]["button_list"][0]["text"] == "认领"  # the others' cards unchanged
    assert (await until(handle, lambda v: True)).state == IncidentState.NOTIFIED

    await world.click(card, "WangGong", "false_alarm", reason="drill")
    view = await until(handle, lambda v: v.state == IncidentState.DISMISSED)
    assert view.closed_by == "wang.gong"
    entry = next(e for e in view.timeline if e.kind == "dismissed")
    assert "false alarm: drill" in entry.detail

    async def told() -> bool:
        name = (await world.by_task(card["task_id"])).get("replaced_name") or ""
        return name.startswith("误报(演练/测试): 王工")

    await eventually(told, within=30)


@pytest.mark.timeout(120)
async def test_the_same_signed_request_again_changes_nothing(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    """The exact bytes of a click again (same signature, timestamp and nonce) within the
    window, a redelivery or an attacker's replay: answered as taken, nothing acted on twice
    (the signature covers the body: another body fails it)."""
    handle, view, card = await fall_told(world, client, task_queue, f"wx-{unique}")
    key = ButtonKey("claim", view.incident_id).encode()
    query, body = sealed_click(card["task_id"], "WangGong", key)
    statuses, duplicates = [], _clicks("duplicate")
    for _ in range(2):
        async with world.http.post(world.callback_url, params=query, data=body) as r:
            statuses.append((r.status, await r.text()))
    assert statuses == [(200, ""), (200, "")] and _clicks("duplicate") == duplicates + 1
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert [e.kind for e in view.timeline].count("acknowledged") == 1


@pytest.mark.timeout(120)
async def test_a_click_temporal_cannot_take_is_parked_and_acts_when_temporal_is_back(
    world: World,
    client: Client,
    settings: Settings,
    redis: Redis,
    task_queue: str,
    unique: str,
) -> None:
    """Temporal stopped (SIGSTOP): the click is answered within WeCom's 5 s and parked in the
    outbox; once Temporal is back it acts, without the vendor delivering it again."""
    handle, view, card = await fall_told(world, client, task_queue, f"wx-{unique}")
    key = ButtonKey("claim", view.incident_id).encode()
    query, body = sealed_click(card["task_id"], "WangGong", key)
    outbox = card_click_outbox_key(f"{task_queue}-clicks")
    pid = int((settings.local.state_dir / "pids" / "temporal.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        async with world.http.post(world.callback_url, params=query, data=body) as r:
            answered = (r.status, await r.text())
        parked = await redis.hlen(outbox)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert answered == (200, "") and parked == 1
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    assert view.acknowledged_by == "wang.gong"

    async def drained() -> bool:
        return await redis.hlen(outbox) == 0

    await eventually(drained, within=30)


@pytest.mark.timeout(120)
async def test_a_flood_of_junk_never_holds_up_a_real_click(
    world: World, client: Client, task_queue: str, unique: str
) -> None:
    """Anyone who knows the receive URL can send junk: each costs a signature check and is
    refused (400, or 429 once a second's refusals pass the limit), while the real click
    sent among them passes and acts."""
    handle, view, card = await fall_told(world, client, task_queue, f"wx-{unique}")
    rejected = _clicks("rejected")
    junk = {"msg_signature": "0" * 40, "timestamp": str(int(time.time())), "nonce": "x"}
    statuses = []
    for _ in range(120):
        async with world.http.post(world.callback_url, params=junk, data=b"<xml/>") as r:
            statuses.append(r.status)
    query, body = sealed_click(
        card["task_id"], "WangGong", ButtonKey("claim", view.incident_id).encode()
    )
    async with world.http.post(world.callback_url, params=query, data=body) as r:
        assert (r.status, await r.text()) == (200, "")
    assert set(statuses) <= {400, 429} and _clicks("rejected") == rejected + 120
    view = await until(handle, lambda v: v.state == IncidentState.ACKNOWLEDGED)
    big = b"<xml>" + b"x" * (70 * 1024) + b"</xml>"
    async with world.http.post(world.callback_url, params=query, data=big) as r:
        assert r.status == 413
    assert _clicks("rejected") == rejected + 121


def sealed_click(task_id: str, userid: str, key: str) -> tuple[dict[str, str], bytes]:
    """A click's POST as WeCom makes it, for the world's app (query, body)."""
    channel = CHANNELS.channels[APP]
    assert isinstance(channel, WeComAppChannel)
    now = str(int(time.time()))
    inner = (
        f"<xml><ToUserName><![CDATA[{channel.corp_id}]]></ToUserName>"
        f"<FromUserName><![CDATA[{userid}]]></FromUserName><CreateTime>{now}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[template_card_event]]></Event>"
        f"<EventKey><![CDATA[{key}]]></EventKey><TaskId><![CDATA[{task_id}]]></TaskId>"
        "<CardType><![CDATA[button_interaction]]></CardType><ResponseCode><![CDATA[RC]]>"
        f"</ResponseCode><AgentID>{channel.agent_id}</AgentID></xml>"
    )
    crypto = WeComCrypto("cb-token", AES_KEY, channel.corp_id)
    sealed = crypto.encrypt(inner.encode(), now, "n" + now)
    query = {"msg_signature": sealed.signature, "timestamp": now, "nonce": sealed.nonce}
    body = f"<xml><Encrypt><![CDATA[{sealed.encrypt}]]></Encrypt></xml>".encode()
    return query, body
