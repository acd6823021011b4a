"""Robot pacing on a real Valkey (one server, then a three-master Cluster) and the real local
receiver, which enforces each vendor's own limit with the same scripted clock as the pacing
(`devstack.receivers.limits`): no assertion depends on how long anything took.

Several `NotifyActivities`, each with its own Redis client, stand for several workers; a
message's retries are driven as Temporal would drive them (after the error's
`next_retry_delay`, on the scripted clock). The last test runs through a real Temporal worker
on Redis' own clock."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.notify import NotifyActivities
from activities.notify.digest import Parked
from activities.notify.limits import Window
from activities.notify.mail import SmtpMailer
from activities.notify.pacing import Granted, Held, Pacer, Robot, Taken
from devstack.localstack.process import free_port
from devstack.receivers.limits import RateLimit
from devstack.receivers.records import Fault
from devstack.receivers.runtime import Receiver
from riskflow.config.channels import (
    ChannelConfig,
    ChannelSecrets,
    DingTalkChannel,
    FeishuChannel,
    NotificationSettings,
    WebhookChannel,
    WeComChannel,
)
from riskflow.contracts.notifications import (
    NOTIFY_PACED,
    NOTIFY_RATE_LIMITED,
    NotificationRequest,
    NotificationResult,
)
from riskflow.infra.redis import RedisClient, redis_client
from riskflow.levels import RiskLevel
from riskflow.names import notification_marker_key, notification_pacing_keys

CONSOLE = "https://console.example.com/incidents"
LEVELS = [RiskLevel.CRITICAL, RiskLevel.HIGH, RiskLevel.MEDIUM]


class Clock:
    """Scripted seconds, shared by the pacing and the receiver."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))  # whole seconds: added seconds stay exact in ms

    def __call__(self) -> float:
        return self.now


def config(**channels: ChannelConfig) -> NotificationSettings:
    return NotificationSettings(claim_seconds=30, marker_ttl_seconds=3600, channels=channels)


def request(channel: str, n: int, level: RiskLevel = RiskLevel.HIGH) -> NotificationRequest:
    return NotificationRequest(
        idempotency_key=f"inc-{n}:L0:{channel}",
        channel=channel,
        kind="opened",
        incident_id=f"inc-{n}",
        site_id="plant-a",
        site_name="Plant A",
        camera_id=f"cam{n}",
        severity=level,
        state="notified",
        summary="A person is lying on the floor.",
        opened_at=datetime(2026, 11, 30, 4, 0, tzinfo=UTC) + timedelta(seconds=n),
        console_url=f"{CONSOLE}/inc-{n}",
    )


@dataclass
class Rig:
    """The receiver, `workers` NotifyActivities sharing one store, and the scripted clock."""

    receiver: Receiver
    store_url: str
    clock: Clock
    workers: list[NotifyActivities] = field(default_factory=list)
    clients: list[RedisClient] = field(default_factory=list)
    http: aiohttp.ClientSession | None = None

    def start(self, settings: NotificationSettings, workers: int = 3) -> None:
        self.http = aiohttp.ClientSession(trust_env=False)
        secrets = ChannelSecrets.from_config(settings, {})
        for _ in range(workers):
            client = redis_client(self.store_url)
            self.clients.append(client)
            mailer = SmtpMailer(self.receiver.host, self.receiver.smtp_port)
            self.workers.append(
                NotifyActivities(
                    self.http,
                    mailer,
                    client,
                    settings,
                    secrets,
                    self.receiver.url,
                    pacing_clock=self.clock,
                )
            )

    async def attempt(
        self, req: NotificationRequest, worker: int = 0
    ) -> NotificationResult | ApplicationError:
        acts = self.workers[worker % len(self.workers)]
        try:
            result: NotificationResult = await ActivityEnvironment().run(acts.notify, req)
        except ApplicationError as exc:
            return exc
        return result

    async def deliver(self, pending: list[NotificationRequest]) -> dict[str, NotificationResult]:
        """Attempt each request, and retry what fails after its `next_retry_delay` (moving the
        clock to the earliest retry), as Temporal would, until every one has a result."""
        due = {r.idempotency_key: (r, self.clock.now) for r in pending}
        results: dict[str, NotificationResult] = {}
        for _ in range(50):
            if not due:
                return results
            self.clock.now = max(self.clock.now, min(t for _, t in due.values()))
            batch = [r for r, t in due.values() if t <= self.clock.now]
            outcomes = await asyncio.gather(*(self.attempt(r, i) for i, r in enumerate(batch)))
            for req, out in zip(batch, outcomes, strict=True):
                key = req.idempotency_key
                if isinstance(out, NotificationResult):
                    results[key] = out
                    del due[key]
                    continue
                assert not out.non_retryable, out
                delay = out.next_retry_delay or timedelta(seconds=1)  # the policy's interval
                due[key] = (req, self.clock.now + delay.total_seconds())
        raise AssertionError(f"still pending after 50 rounds: {sorted(due)}")

    def received(self, channel: str) -> list[dict[str, Any]]:
        return [n for n in self.receiver.records.notifications if n["channel"] == channel]

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()
        if self.http is not None:
            await self.http.close()


@pytest.fixture
async def rig(store: RedisClient, store_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    clock = Clock()
    receiver = Receiver("127.0.0.1", free_port(), free_port(), tmp_path / "cert.pem")
    receiver.records.clock = clock
    rig = Rig(receiver, store_url, clock)
    try:
        yield rig
    finally:
        await rig.close()
        await receiver.stop()


async def start(rig: Rig, settings: NotificationSettings, workers: int = 3) -> None:
    await rig.receiver.start(settings, ChannelSecrets.from_config(settings, {}))
    rig.start(settings, workers)


def text_of(notification: dict[str, Any]) -> str:
    payload = notification["payload"]
    if "markdown" in payload:
        return str(payload["markdown"].get("text") or payload["markdown"].get("content"))
    return str(payload["card"]["elements"][0]["text"]["content"])


def merged_count(channel: str) -> float:
    labels = {"channel": channel, "outcome": "merged"}
    return REGISTRY.get_sample_value("riskflow_notifications_total", labels) or 0.0


async def marker_state(store: RedisClient, key: str) -> str:
    raw = await store.get(notification_marker_key(key))
    assert raw is not None, key
    return str(json.loads(raw)["state"])


# -- the window script itself, on a scripted clock ------------------------------------------


def parked(n: int) -> Parked:
    return Parked(f"k{n}", f"title {n}", RiskLevel.HIGH, f"{CONSOLE}/inc-{n}", n)


async def test_sliding_windows_park_and_hand_over(store: RedisClient) -> None:
    clock = Clock()
    clock.now = 1_000.0
    pacer = Pacer(store, ttl_seconds=3600, guard_ms=0, clock=clock)
    robot = Robot("r1", "feishu", (Window(3, 10.0), Window(2, 1.0)))
    got = []
    for n, at in enumerate([1000.0, 1000.1, 1000.2, 1001.0, 1001.5]):
        clock.now = at
        got.append(await pacer.acquire(robot, parked(n), f"t{n}"))
    assert got[:2] == [Granted(()), Granted(())]
    assert got[2] == Held(wait_seconds=0.8, blocked=False, parked=1)  # the 1 s window
    assert got[3] == Granted((parked(2),))  # the next slot carries what was parked
    assert got[4] == Held(wait_seconds=8.5, blocked=False, parked=1)  # the 10 s window
    clock.now = 1010.0  # the first send leaves the 10 s window at exactly 10 s
    assert await pacer.acquire(robot, parked(5), "t5") == Granted((parked(4),))
    # The taken message's own attempt learns the digest's outcome.
    taken = await pacer.acquire(robot, parked(4), "t6")
    assert isinstance(taken, Taken) and (taken.state, taken.digest) == ("sending", "t5")
    assert await pacer.settle(robot, "other-digest", ["k4"], "sent", "x") == 0
    assert await pacer.settle(robot, "t5", ["k4"], "sent", "merged: ok") == 1
    clock.now = 1012.0
    taken = await pacer.acquire(robot, parked(4), "t7")
    assert taken == Taken("sent", "t5", "merged: ok", 2.0)


async def test_a_refused_digest_parks_its_messages_again_and_blocks(store: RedisClient) -> None:
    clock = Clock()
    pacer = Pacer(store, ttl_seconds=3600, guard_ms=0, clock=clock)
    robot = Robot("r2", "dingtalk", (Window(1, 60.0),))
    assert await pacer.acquire(robot, parked(0), "t0") == Granted(())
    assert isinstance(await pacer.acquire(robot, parked(1), "t1"), Held)
    clock.now += 60
    assert await pacer.acquire(robot, parked(2), "t2") == Granted((parked(1),))
    assert await pacer.restore(robot, "t2", ["k1"]) == 1
    assert await pacer.block(robot, 600, "errcode 130101", parked(2)) == 600.0
    assert await pacer.block(robot, 60, "shorter") == 600.0  # a longer block stays
    clock.now += 100
    held = await pacer.acquire(robot, parked(3), "t3")
    assert held == Held(wait_seconds=500.0, blocked=True, parked=3)
    keys = notification_pacing_keys(robot.id)
    assert (await store.hget(keys[1], "reason")) == b"errcode 130101"
    clock.now += 500
    granted = await pacer.acquire(robot, parked(3), "t4")
    assert isinstance(granted, Granted)
    assert sorted(p.key for p in granted.parked) == ["k1", "k2"]


# -- the issue: 25 incidents in one minute on one DingTalk robot --------------------------------


@pytest.mark.parametrize(("rate", "first_window"), [(20, 20), (None, 18)])
async def test_25_incidents_on_one_dingtalk_robot(
    rig: Rig, store: RedisClient, rate: int | None, first_window: int
) -> None:
    """20 a minute (DingTalk's own, or its default pacing 10% below): never a send over the
    robot's limit by the receiver's own count, and every incident told, directly or in one
    digest, by three workers at once."""
    rig.receiver.records.limits = [RateLimit("ops", 20, 60.0, block_seconds=600.0)]
    await start(rig, config(ops=DingTalkChannel(type="dingtalk", rate_per_minute=rate)))
    requests = [request("ops", n, LEVELS[n % 3]) for n in range(25)]
    merged_before = merged_count("ops")

    first = await asyncio.gather(*(rig.attempt(r, i) for i, r in enumerate(requests)))
    sent = [o for o in first if isinstance(o, NotificationResult)]
    held = [o for o in first if isinstance(o, ApplicationError)]
    assert len(sent) == first_window and all(o.status == "sent" for o in sent)
    assert len(held) == 25 - first_window
    for error in held:
        assert error.type == NOTIFY_PACED and not error.non_retryable
        assert error.next_retry_delay is not None
        assert 0 < error.next_retry_delay.total_seconds() <= 60.25
    assert len(rig.received("ops")) == first_window

    held_requests = [
        r for r, o in zip(requests, first, strict=True) if isinstance(o, ApplicationError)
    ]
    results = await rig.deliver(held_requests)
    ops = rig.received("ops")
    assert len(ops) == first_window + 1  # the rest went as one digest
    assert rig.receiver.records.limits[0].refused == 0  # the robot never said "too fast"
    times = [n["received_at"] for n in ops]
    assert rig.receiver.records.limits[0].most_in_window(times) <= 20
    digest = text_of(ops[-1])
    assert digest.startswith(f"### {25 - first_window} notifications, merged")
    merged = [k for k, r in results.items() if r.status == "already_sent"]
    assert len(merged) == 25 - first_window - 1
    assert all(results[k].detail.startswith("merged: sent in a digest") for k in merged)
    assert merged_count("ops") - merged_before == 25 - first_window - 1
    told = "\n".join(text_of(n) for n in ops)
    for n in range(25):  # every incident told, once
        assert (
            told.count(f"({CONSOLE}/inc-{n}?action=ack)") + told.count(f"({CONSOLE}/inc-{n})") == 1
        ), n
        assert await marker_state(store, f"inc-{n}:L0:ops") == "sent"

    # A replayed step (every activity run again) sends nothing more.
    again = await rig.deliver(requests)
    assert {r.status for r in again.values()} == {"already_sent"}
    assert len(rig.received("ops")) == first_window + 1


# -- the vendor's own "too fast" --------------------------------------------------------------


async def test_a_blocked_robot_gets_its_messages_merged_after_it_recovers(
    rig: Rig, store: RedisClient
) -> None:
    """The robot answers 130101 to its first message and again to the first message after
    the block: every worker holds its messages for the vendor's 10 minutes (twice), then one
    digest carries them all. Another robot is not delayed meanwhile."""
    too_fast = {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    rig.receiver.records.faults = [Fault("ops", times=2, status=200, body=too_fast)]
    await start(
        rig,
        config(
            ops=DingTalkChannel(type="dingtalk", secret=SecretStr("SEC-ops")),
            lead=WeComChannel(type="wecom"),
        ),
    )
    ops = [request("ops", n, LEVELS[n % 3]) for n in range(5)]
    lead = [request("lead", n) for n in range(100, 103)]
    start_at = rig.clock.now

    refused = await rig.attempt(ops[0])
    assert isinstance(refused, ApplicationError) and refused.type == NOTIFY_RATE_LIMITED
    assert refused.next_retry_delay == timedelta(seconds=600)
    block = await store.hgetall(notification_pacing_keys(Robot.id_of(ops_url(rig)))[1])
    assert b"130101" in block[b"reason"]  # recorded for every worker
    rig.clock.now += 30
    for n, req in enumerate(ops[1:]):
        held = await rig.attempt(req, n)
        assert isinstance(held, ApplicationError) and held.type == NOTIFY_PACED
        assert held.next_retry_delay == timedelta(seconds=570)
        assert "blocked" in held.message
    for n, req in enumerate(lead):  # another channel goes at once, from any worker
        result = await rig.attempt(req, n)
        assert isinstance(result, NotificationResult) and result.status == "sent"
    assert rig.clock.now == start_at + 30 and len(rig.received("lead")) == 3

    results = await rig.deliver(ops)
    assert rig.clock.now >= start_at + 1200  # two blocks of 10 minutes
    [digest] = rig.received("ops")
    text = text_of(digest)
    assert text.startswith("### 5 notifications, merged")
    assert all(f"({CONSOLE}/inc-{n})" in text for n in range(5))
    assert rig.receiver.records.faults[0].times == 0
    assert sorted(r.status for r in results.values()) == ["already_sent"] * 4 + ["sent"]
    for req in ops:
        assert await marker_state(store, req.idempotency_key) == "sent"


def ops_url(rig: Rig) -> str:
    return f"{rig.receiver.url}/dingtalk/robot/send?access_token=ops"


@pytest.mark.parametrize(
    ("channel", "status", "body", "headers", "block"),
    [
        (WeComChannel(type="wecom"), 200, {"errcode": 45009, "errmsg": "freq"}, {}, 60),
        (FeishuChannel(type="feishu"), 200, {"code": 11232, "msg": "frequency limited"}, {}, 60),
        (
            WebhookChannel(type="webhook", secret=SecretStr("s"), rate_per_minute=30),
            429,
            {"error": "slow down"},
            {"Retry-After": "7"},
            7,
        ),
        (  # no rate of its own: never held for a slot, but its 429 closes it all the same
            WebhookChannel(type="webhook", secret=SecretStr("s")),
            429,
            {"error": "slow down"},
            {"Retry-After": "120"},
            120,
        ),
    ],
    ids=["wecom-45009", "feishu-11232", "webhook-429", "unpaced-webhook-429"],
)
async def test_each_vendors_too_fast_closes_its_robot(
    rig: Rig,
    channel: ChannelConfig,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    block: int,
) -> None:
    rig.receiver.records.faults = [Fault("bot", 1, status, body, headers)]
    await start(rig, config(bot=channel), workers=2)
    first, second = request("bot", 1), request("bot", 2)
    refused = await rig.attempt(first)
    assert isinstance(refused, ApplicationError) and refused.type == NOTIFY_RATE_LIMITED
    assert refused.next_retry_delay == timedelta(seconds=block)
    held = await rig.attempt(second, 1)
    assert isinstance(held, ApplicationError) and held.type == NOTIFY_PACED
    assert held.next_retry_delay == timedelta(seconds=block)
    results = await rig.deliver([first, second])
    [digest] = rig.received("bot")
    assert "2 notifications, merged" in json.dumps(digest["payload"])
    assert sorted(r.status for r in results.values()) == ["already_sent", "sent"]


async def test_a_digest_whose_answer_is_lost_is_not_sent_again(
    rig: Rig, store: RedisClient
) -> None:
    """The robot got the digest but its answer never came: every message in it is `unknown`,
    and their attempts answer uncertain instead of sending a second digest."""
    ding = DingTalkChannel(type="dingtalk", rate_per_minute=1, timeout_seconds=0.5)
    await start(rig, config(ops=ding), workers=2)
    requests = [request("ops", n) for n in range(3)]
    assert isinstance(await rig.attempt(requests[0]), NotificationResult)
    for req in requests[1:]:
        assert isinstance(await rig.attempt(req), ApplicationError)
    rig.receiver.records.faults = [Fault("ops", 1, 200, {}, delay_seconds=3.0)]
    results = await rig.deliver(requests[1:])
    assert [r.uncertain for r in results.values()] == [True, True]
    assert len(rig.received("ops")) == 2  # the first message, and the digest (answer lost)
    for req in requests[1:]:
        assert await marker_state(store, req.idempotency_key) == "unknown"


# -- through Temporal, on Redis' own clock ------------------------------------------------------


@workflow.defn(sandboxed=False)
class NotifyMany:
    """Sends each request with Temporal's retries, all at once."""

    @workflow.run
    async def run(self, requests: list[NotificationRequest]) -> list[NotificationResult]:
        policy = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=30)
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        "notify",
                        r,
                        result_type=NotificationResult,
                        start_to_close_timeout=timedelta(seconds=20),
                        retry_policy=policy,
                    )
                    for r in requests
                )
            )
        )


async def test_temporal_retries_a_parked_message_when_the_robot_frees(
    store: RedisClient, store_url: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """A Feishu bot (5 a second, paced at 4): ten messages at once; Temporal retries the
    parked ones after `next_retry_delay`, one digest carries them, nothing goes twice."""
    settings = config(lark=FeishuChannel(type="feishu", secret=SecretStr("lark-secret")))
    receiver = Receiver("127.0.0.1", free_port(), free_port(), tmp_path / "cert.pem")
    receiver.records.limits = [RateLimit("lark", 5, 1.0), RateLimit("lark", 100, 60.0)]
    await receiver.start(settings, ChannelSecrets.from_config(settings, {}))
    http = aiohttp.ClientSession(trust_env=False)
    try:
        acts = NotifyActivities(
            http,
            SmtpMailer(),
            store,
            settings,
            ChannelSecrets.from_config(settings, {}),
            receiver.url,
        )
        requests = [request("lark", n) for n in range(10)]
        async with Worker(
            client, task_queue=task_queue, workflows=[NotifyMany], activities=[acts.notify]
        ):
            results = await client.execute_workflow(
                NotifyMany.run,
                requests,
                id=f"notify-many-{task_queue}",
                task_queue=task_queue,
                result_type=list[NotificationResult],
            )
        got = [n for n in receiver.records.notifications if n["channel"] == "lark"]
        assert all(limit.refused == 0 for limit in receiver.records.limits)
        assert 4 <= len(got) < 10  # four at once, then digests of the parked ones
        told = "\n".join(json.dumps(n["payload"]) for n in got)
        for req in requests:  # a card's buttons, or a digest's line
            assert f"{req.console_url}?" in told or f"{req.console_url})" in told
        assert {r.status for r in results} <= {"sent", "already_sent"}
        merged = [r for r in results if r.status == "already_sent"]
        assert len(merged) == 10 - len(got)
    finally:
        await http.close()
        await receiver.stop()
