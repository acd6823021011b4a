"""Notification channels against the real local receiver (vendor formats and signatures
verified there), a real SMTP server with STARTTLS, and idempotency markers in a real Valkey."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from redis.asyncio import Redis
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.notify import NotifyActivities
from activities.notify.http import fresh_connection_session
from activities.notify.mail import SmtpMailer
from activities.notify.webhook import signature
from devstack.localstack.process import free_port
from devstack.receivers.runtime import Receiver
from riskflow.config.channels import (
    ChannelSecrets,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    NotificationSettings,
    WebhookChannel,
    WeComChannel,
)
from riskflow.config.settings import Settings
from riskflow.contracts.notifications import (
    NOTIFY_CHANNEL_ERROR,
    NOTIFY_IN_FLIGHT,
    NOTIFY_PACED,
    NOTIFY_RATE_LIMITED,
    NOTIFY_REJECTED,
    NOTIFY_UNKNOWN_CHANNEL,
    NotificationRequest,
    NotificationResult,
)
from riskflow.infra.endpoints import Endpoints
from riskflow.levels import RiskLevel
from riskflow.names import notification_marker_key
from tests.conftest import ReceiverAdmin, running_worker

CLAIM_SECONDS = 30.0
TTL_SECONDS = 3600


def channels(receiver_url: str, timeout: float = 5.0) -> NotificationSettings:
    return NotificationSettings(
        claim_seconds=CLAIM_SECONDS,
        marker_ttl_seconds=TTL_SECONDS,
        channels={
            "hook": WebhookChannel(type="webhook", secret=SecretStr("hook-secret")),
            "ding": DingTalkChannel(
                type="dingtalk", secret=SecretStr("SEC-ding"), timeout_seconds=timeout
            ),
            # A configured URL: the receiver knows the robot by the URL's access token.
            "ding-url": DingTalkChannel(
                type="dingtalk",
                url=SecretStr(f"{receiver_url}/dingtalk/robot/send?access_token=tok123"),
            ),
            "wecom": WeComChannel(type="wecom"),
            "lark": FeishuChannel(type="feishu", secret=SecretStr("lark-secret")),
            "mail": EmailChannel(type="email", recipients=["ops@example.com"]),
        },
    )


def tampered(config: NotificationSettings) -> NotificationSettings:
    """The same channels with secrets the receiver does not know."""
    changed = {
        name: c.model_copy(update={"secret": SecretStr("wrong")}) if hasattr(c, "secret") else c
        for name, c in config.channels.items()
    }
    return config.model_copy(update={"channels": changed})


class Rig:
    def __init__(self, receiver: Receiver, redis: Redis, tmp: Path) -> None:
        self.receiver = receiver
        self.redis = redis
        self.tmp = tmp
        self.http = fresh_connection_session()

    def activities(self, config: NotificationSettings | None = None) -> NotifyActivities:
        config = config or channels(self.receiver.url)
        mailer = SmtpMailer(self.receiver.host, self.receiver.smtp_port, self.receiver.cert_file)
        secrets = ChannelSecrets.from_config(config, {})
        return NotifyActivities(self.http, mailer, self.redis, config, secrets, self.receiver.url)

    async def notify(
        self, request: NotificationRequest, acts: NotifyActivities | None = None
    ) -> NotificationResult:
        result: NotificationResult = await ActivityEnvironment().run(
            (acts or self.activities()).notify, request
        )
        return result

    def received(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [n for n in self.receiver.records.notifications if channel in (None, n["channel"])]

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        async with self.http.post(self.receiver.url + path, data=body, headers=headers) as r:
            return r.status, await r.json()


@pytest.fixture
async def rig(redis: Redis, tmp_path: Path) -> AsyncIterator[Rig]:
    receiver = Receiver(
        host="127.0.0.1",
        http_port=free_port(),
        smtp_port=free_port(),
        cert_file=tmp_path / "smtp-cert.pem",
    )
    config = channels(receiver.url)
    await receiver.start(config, ChannelSecrets.from_config(config, {}))
    rig = Rig(receiver, redis, tmp_path)
    try:
        yield rig
    finally:
        await rig.http.close()
        await receiver.stop()


def request(channel: str, key: str = "", language: str = "en", **extra: Any) -> NotificationRequest:
    fields: dict[str, Any] = {
        "idempotency_key": key or f"inc-1:opened:{channel}:{time.time_ns()}",
        "channel": channel,
        "kind": "opened",
        "incident_id": "inc-cam1-fall-1",
        "site_id": "plant-a",
        "site_name": "Plant A",
        "camera_id": "cam1",
        "severity": RiskLevel.CRITICAL,
        "state": "notified",
        "summary": "A person is lying on the floor near the press.",
        "hazards": ["fall"],
        "recommended_actions": ["send a first aider"],
        "opened_at": datetime(2026, 11, 30, 4, 0, tzinfo=UTC),
        "console_url": "https://console.example.com/incidents/inc-cam1-fall-1",
        "language": language,
    }
    return NotificationRequest.model_validate({**fields, **extra})


async def expect_error(
    rig: Rig, req: NotificationRequest, acts: NotifyActivities | None = None
) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await rig.notify(req, acts)
    return caught.value


# -- each channel's format, verified by the receiver ---------------------------------------


@pytest.mark.parametrize("channel", ["hook", "ding", "ding-url", "wecom", "lark", "mail"])
async def test_each_channel_arrives_in_its_vendor_format(rig: Rig, channel: str) -> None:
    result = await rig.notify(request(channel))
    assert result.status == "sent" and not result.uncertain
    assert not rig.receiver.records.rejections
    [got] = rig.received(channel if channel != "mail" else "email")
    assert "Plant A" in got["title"] and "critical" in got["title"]


async def test_feishu_card_has_acknowledge_and_false_alarm_buttons(rig: Rig) -> None:
    await rig.notify(request("lark"))
    [got] = rig.received("lark")
    payload = got["payload"]
    assert payload["msg_type"] == "interactive" and payload["sign"] and payload["timestamp"]
    [actions] = [e for e in payload["card"]["elements"] if e["tag"] == "action"]
    buttons = {b["text"]["content"]: b["url"] for b in actions["actions"]}
    base = "https://console.example.com/incidents/inc-cam1-fall-1"
    assert buttons == {"Acknowledge": f"{base}?action=ack", "False alarm": f"{base}?action=dismiss"}


async def test_dingtalk_markdown_carries_the_acknowledge_link(rig: Rig) -> None:
    await rig.notify(request("ding"))
    [got] = rig.received("ding")
    markdown = got["payload"]["markdown"]
    assert markdown["title"] and "?action=ack)" in markdown["text"]


async def test_email_went_over_starttls_with_a_stable_message_id(rig: Rig) -> None:
    req = request("mail")
    await rig.notify(req)
    [got] = rig.received("email")
    assert got["payload"]["starttls"] is True
    assert got["payload"]["to"] == ["ops@example.com"]
    assert got["idempotency_key"] == req.idempotency_key
    assert got["payload"]["message_id"].endswith("@riskflow>")


async def test_email_without_starttls_is_refused_for_good(rig: Rig) -> None:
    config = channels(rig.receiver.url)
    plain = config.channels["mail"].model_copy(update={"starttls": False})
    config = config.model_copy(update={"channels": {**config.channels, "mail": plain}})
    error = await expect_error(rig, request("mail"), rig.activities(config))
    assert error.type == NOTIFY_REJECTED and error.non_retryable
    assert not rig.received()


# -- texts by the site's language ------------------------------------------------------------


async def test_texts_follow_the_site_language(rig: Rig) -> None:
    await rig.notify(request("wecom", language="zh-CN"))
    await rig.notify(request("wecom", language="en"))
    zh, en = (n["payload"]["markdown"]["content"] for n in rig.received("wecom"))
    assert (
        "风险等级" in zh and "极高" in zh and "已通知" in zh and "确认处理" in zh and "误报" in zh
    )
    assert "Severity" in en and "Acknowledge" in en and "风险" not in en
    await rig.notify(request("lark", language="zh-CN"))
    [card] = [n["payload"]["card"] for n in rig.received("lark")]
    labels = [
        b["text"]["content"] for e in card["elements"] if e["tag"] == "action" for b in e["actions"]
    ]
    assert labels == ["确认处理", "误报"]


async def test_long_wecom_message_is_cut_to_the_vendor_limit(rig: Rig) -> None:
    hazards = [f"第 {i} 号危险:人员在压力机旁倒地,需要立即处理" for i in range(300)]
    result = await rig.notify(request("wecom", language="zh-CN", hazards=hazards))
    assert result.status == "sent"
    [got] = rig.received("wecom")
    assert len(got["payload"]["markdown"]["content"].encode()) <= 4096


LONG_ZH = "一名工人倒在压力机旁,周围有液压油泄漏,需要立即停机并派急救员到场。" * 400


@pytest.mark.parametrize("channel", ["wecom", "ding", "lark", "hook", "mail"])
async def test_a_long_chinese_summary_is_cut_and_the_fields_and_links_arrive(
    rig: Rig, channel: str
) -> None:
    """The summary is what gets cut (by the vendor's unit: WeCom's 4096 bytes of content,
    DingTalk's and Feishu's 20000-byte body), never the fields after it or the console links."""
    req = request(channel, language="zh-CN", summary=LONG_ZH, hazards=[LONG_ZH[:400]] * 20)
    assert (await rig.notify(req)).status == "sent"
    assert not rig.receiver.records.rejections
    [got] = rig.received(channel if channel != "mail" else "email")
    text = json.dumps(got["payload"], ensure_ascii=False)
    for word in ("风险等级", "极高", "状态", "已通知", "事件编号", "inc-cam1-fall-1", "发生时间"):
        assert word in text, word
    assert "?action=ack" in text and "?action=dismiss" in text
    if channel in ("wecom", "ding", "lark"):  # the vendors with a limit cut the free text
        assert "…" in text and LONG_ZH not in text


# -- titles by kind, and untrusted text, as the receiver got them -----------------------------

KIND_STEPS: list[dict[str, Any]] = [
    {"kind": "opened"},
    {"kind": "escalated", "escalation_level": 1},
    {"kind": "escalated", "escalation_level": 0},  # severity raised on an acknowledged incident
    {"kind": "reminder", "escalation_level": 1},
    {"kind": "summary", "escalation_level": 1},
    {"kind": "resolved", "state": "resolved"},
    {"kind": "dismissed", "state": "dismissed"},
]


@pytest.mark.parametrize("channel", ["ding", "wecom", "lark", "hook", "mail"])
async def test_each_kind_arrives_with_its_own_title_in_the_site_language(
    rig: Rig, channel: str
) -> None:
    for step in KIND_STEPS:
        await rig.notify(request(channel, language="zh-CN", title="fall on camera cam1", **step))
        await rig.redis.flushdb()  # the robot's window passes (pacing: tests/test_pacing.py)
    assert not rig.receiver.records.rejections
    got = rig.received(channel if channel != "mail" else "email")
    titles = [n["title"] for n in got]
    assert len(set(titles)) == len(KIND_STEPS), titles
    assert titles[0].startswith("新事件") and titles[5].startswith("已解除"), titles
    assert titles[6].startswith("已判定为误报") and titles[2].startswith("风险等级升至"), titles
    assert not any("on camera" in t or "Incident" in t for t in titles), titles
    closing = json.dumps(got[5]["payload"], ensure_ascii=False)
    assert "事件已解除,无需处理" in closing
    assert "确认处理" not in closing and "?action=ack" not in closing  # nothing to acknowledge


async def test_feishu_closing_card_is_green_with_one_link(rig: Rig) -> None:
    await rig.notify(request("lark", kind="resolved", state="resolved"))
    [got] = rig.received("lark")
    card = got["payload"]["card"]
    assert card["header"]["template"] == "green"
    [actions] = [e for e in card["elements"] if e["tag"] == "action"]
    base = "https://console.example.com/incidents/inc-cam1-fall-1"
    assert [(b["text"]["content"], b["url"]) for b in actions["actions"]] == [
        ("Open the incident", base)
    ]


HOSTILE = (
    '<at id=all></at> <at user_id="all">所有人</at> <@all> @all @13800000000 '
    "[点击确认](http://evil.example.com/ack) ![x](https://evil.example.com/x.png) "
    "<font color=\"warning\">已解除</font> <a href='https://evil.example.com'>x</a> "
    "www.evil.example.com\n### Resolved\n> quoted"
)


@pytest.mark.parametrize("channel", ["hook", "ding", "wecom", "lark", "mail"])
async def test_model_text_mentions_nobody_and_links_nowhere(rig: Rig, channel: str) -> None:
    """Summary, hazards, actions and the camera label written to mention everyone, link, show
    an image and colour text: the receiver finds only riskflow's console links."""
    req = request(
        channel,
        summary=HOSTILE,
        hazards=[HOSTILE, "<@zhangsan>"],
        recommended_actions=[HOSTILE],
        camera_id="cam1<at id=all></at>",
    )
    assert (await rig.notify(req)).status == "sent"
    assert not rig.receiver.records.rejections
    [got] = rig.received(channel if channel != "mail" else "email")
    markup = got["markup"]
    assert markup["mentions"] == markup["images"] == markup["colours"] == [], markup
    base = "https://console.example.com/incidents/inc-cam1-fall-1"
    assert set(markup["links"]) == {f"{base}?action=ack", f"{base}?action=dismiss"}, markup


# -- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["hook", "ding", "lark"])
async def test_a_wrong_signature_is_refused(rig: Rig, channel: str) -> None:
    acts = rig.activities(tampered(channels(rig.receiver.url)))
    error = await expect_error(rig, request(channel), acts)
    assert error.type == NOTIFY_REJECTED and error.non_retryable
    assert not rig.received()
    assert rig.receiver.records.rejections[-1]["channel"] == channel
    # The claim was released: with the right secret the same key is sent.
    req = request(channel)
    assert (await rig.notify(req)).status == "sent"


async def test_webhook_body_changed_after_signing_is_refused(rig: Rig) -> None:
    body = json.dumps(request("hook").model_dump(mode="json") | {"title": "t", "text": "x"})
    ts = str(int(time.time()))
    headers = {
        "X-Riskflow-Timestamp": ts,
        "X-Riskflow-Signature": signature("hook-secret", ts, body.encode()),
        "Content-Type": "application/json",
    }
    headers["Idempotency-Key"] = json.loads(body)["idempotency_key"]
    status, answer = await rig.post("/webhook/hook", body.replace('"x"', '"y"').encode(), headers)
    assert status == 401 and answer == {"error": "signature does not match"}
    stale = str(int(time.time()) - 3600)
    headers |= {
        "X-Riskflow-Timestamp": stale,
        "X-Riskflow-Signature": signature("hook-secret", stale, body.encode()),
    }
    status, _ = await rig.post("/webhook/hook", body.encode(), headers)
    assert status == 401
    assert not rig.received()


async def test_feishu_stale_timestamp_and_unknown_token_get_feishu_errors(rig: Rig) -> None:
    from activities.notify.feishu import sign

    stale = str(int(time.time()) - 7200)
    body = {
        "timestamp": stale,
        "sign": sign("lark-secret", stale),
        "msg_type": "text",
        "content": {"text": "hi"},
    }
    status, answer = await rig.post(
        "/feishu/open-apis/bot/v2/hook/lark", json.dumps(body).encode(), {}
    )
    assert (status, answer["code"]) == (200, 19021)
    status, answer = await rig.post(
        "/feishu/open-apis/bot/v2/hook/nobody", json.dumps(body).encode(), {}
    )
    assert answer["code"] == 19001
    status, answer = await rig.post(
        "/dingtalk/robot/send?access_token=nobody", b"{}", {"Content-Type": "application/json"}
    )
    assert answer["errcode"] == 300001
    assert not rig.received()


# -- idempotency ------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["hook", "ding", "wecom", "lark", "mail"])
async def test_same_key_twice_is_one_message(rig: Rig, channel: str) -> None:
    def count(outcome: str) -> float:
        labels = {"channel": channel, "outcome": outcome}
        return REGISTRY.get_sample_value("riskflow_notifications_total", labels) or 0.0

    before = count("sent"), count("already_sent")
    req = request(channel)
    first = await rig.notify(req)
    second = await rig.notify(req)
    assert (first.status, second.status) == ("sent", "already_sent")
    assert second.detail == first.detail
    assert len(rig.received()) == 1
    assert (count("sent"), count("already_sent")) == (before[0] + 1, before[1] + 1)


async def test_answer_lost_after_delivery_is_not_sent_again(rig: Rig) -> None:
    """DingTalk got the message but its answer never came (the request timed out): the retry
    reports an uncertain outcome instead of sending a second message."""
    acts = rig.activities(channels(rig.receiver.url, timeout=0.5))
    rig.receiver.records.faults = [_fault("ding", delay_seconds=3.0)]
    req = request("ding")
    error = await expect_error(rig, req, acts)
    assert error.type == NOTIFY_CHANNEL_ERROR and not error.non_retryable
    retried = await rig.notify(req, acts)
    assert retried.status == "already_sent" and retried.uncertain
    assert len(rig.received("ding")) == 1


async def test_worker_died_while_sending(rig: Rig) -> None:
    """A claim left by an attempt that died: young -> wait (retryable, with a delay); old ->
    not sent again on a vendor robot; sent again on the webhook, whose receiver dedupes."""
    req = request("ding")
    name = notification_marker_key(req.idempotency_key)
    claim = json.dumps({"state": "sending", "detail": ""})
    await rig.redis.set(name, claim, px=TTL_SECONDS * 1000 - 2_000)  # claimed 2 s ago
    error = await expect_error(rig, req)
    assert error.type == NOTIFY_IN_FLIGHT and not error.non_retryable
    assert error.next_retry_delay is not None and error.next_retry_delay.total_seconds() > 20
    await rig.redis.set(name, claim, px=int((TTL_SECONDS - CLAIM_SECONDS - 5) * 1000))
    result = await rig.notify(req)
    assert result.status == "already_sent" and result.uncertain
    assert not rig.received()

    hook = request("hook")
    assert (await rig.notify(hook)).status == "sent"
    await rig.redis.set(
        notification_marker_key(hook.idempotency_key),
        claim,
        px=int((TTL_SECONDS - CLAIM_SECONDS - 5) * 1000),
    )
    assert (await rig.notify(hook)).status == "sent"
    assert len(rig.received("hook")) == 1 and rig.receiver.records.duplicates == 1


# -- vendor error answers -----------------------------------------------------------------------


def _fault(channel: str, status: int = 200, body: dict[str, Any] | None = None, **kw: Any) -> Any:
    from devstack.receivers.records import Fault

    return Fault(channel=channel, times=1, status=status, body=body or {}, **kw)


@pytest.mark.parametrize(
    ("channel", "status", "body", "kind", "headers"),
    [
        ("ding", 200, {"errcode": 130101, "errmsg": "send too fast"}, NOTIFY_RATE_LIMITED, {}),
        (
            "ding",
            200,
            {"errcode": 310000, "errmsg": "keywords not in content"},
            NOTIFY_REJECTED,
            {},
        ),
        (
            "wecom",
            200,
            {"errcode": 45009, "errmsg": "api freq out of limit"},
            NOTIFY_RATE_LIMITED,
            {},
        ),
        ("wecom", 200, {"errcode": 93000, "errmsg": "invalid webhook url"}, NOTIFY_REJECTED, {}),
        ("wecom", 200, {"errcode": -1, "errmsg": "system busy"}, NOTIFY_CHANNEL_ERROR, {}),
        ("lark", 200, {"code": 11232, "msg": "frequency limited"}, NOTIFY_RATE_LIMITED, {}),
        ("lark", 200, {"code": 19024, "msg": "Key Words Not Found"}, NOTIFY_REJECTED, {}),
        ("lark", 200, {"code": 12345, "msg": "something new"}, NOTIFY_CHANNEL_ERROR, {}),
        ("lark", 200, {"msg": "no code at all"}, NOTIFY_CHANNEL_ERROR, {}),
        ("hook", 503, {"error": "down"}, NOTIFY_CHANNEL_ERROR, {}),
        ("hook", 429, {"error": "slow down"}, NOTIFY_RATE_LIMITED, {"Retry-After": "7"}),
        ("hook", 404, {"error": "gone"}, NOTIFY_REJECTED, {}),
    ],
)
async def test_vendor_error_answers_are_classified(
    rig: Rig, channel: str, status: int, body: dict[str, Any], kind: str, headers: dict[str, str]
) -> None:
    rig.receiver.records.faults = [_fault(channel, status, body, headers=headers)]
    req = request(channel)
    error = await expect_error(rig, req)
    assert error.type == kind
    assert error.non_retryable == (kind == NOTIFY_REJECTED)
    if headers:
        assert error.next_retry_delay is not None
        assert error.next_retry_delay.total_seconds() == 7
    assert not rig.received()
    if kind == NOTIFY_RATE_LIMITED:
        # A robot's "too fast", and a webhook's 429, close it for every worker
        # (tests/test_pacing.py): the retry is parked until the block ends, which flushing the
        # store stands for here.
        assert (await expect_error(rig, req)).type == NOTIFY_PACED
        await rig.redis.flushdb()
    # Not delivered, so the claim was released: Temporal's retry sends it, once.
    assert (await rig.notify(req)).status == "sent"
    assert len(rig.received()) == 1


async def test_unknown_channel_is_not_retried(rig: Rig) -> None:
    error = await expect_error(rig, request("nobody"))
    assert error.type == NOTIFY_UNKNOWN_CHANNEL and error.non_retryable


async def test_unreachable_channel_is_retried_and_sends_later(rig: Rig) -> None:
    config = channels(rig.receiver.url)
    gone = f"http://127.0.0.1:{free_port()}/dingtalk/robot/send?access_token=ding"
    broken = config.channels["ding"].model_copy(update={"url": SecretStr(gone)})
    acts = rig.activities(
        config.model_copy(update={"channels": {**config.channels, "ding": broken}})
    )
    req = request("ding")
    error = await expect_error(rig, req, acts)
    assert error.type == NOTIFY_CHANNEL_ERROR and not error.non_retryable
    assert "access_token" not in str(error)  # the robot's token is a secret
    assert (await rig.notify(req)).status == "sent"


# -- through Temporal, and through the worker's own wiring -----------------------------------


@workflow.defn(sandboxed=False)
class NotifyTwice:
    """Sends the same step twice, each with Temporal's retries (as a replayed step would)."""

    @workflow.run
    async def run(self, req: NotificationRequest) -> list[NotificationResult]:
        results = []
        for _ in range(2):
            result = await workflow.execute_activity(
                "notify",
                req,
                result_type=NotificationResult,
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=50), maximum_attempts=5
                ),
            )
            results.append(result)
        return results


@pytest.mark.parametrize(
    ("channel", "fault", "uncertain"),
    [
        ("wecom", {"status": 200, "body": {"errcode": -1, "errmsg": "system busy"}}, False),
        ("ding", {"status": 200, "body": {}, "delay_seconds": 3.0}, True),
    ],
)
async def test_retried_activity_sends_one_message(
    rig: Rig,
    client: Client,
    task_queue: str,
    channel: str,
    fault: dict[str, Any],
    uncertain: bool,
) -> None:
    """Temporal retries the activity (a vendor error; an answer lost after delivery) and runs
    the step again: one message reaches the receiver."""
    rig.receiver.records.faults = [_fault(channel, **fault)]
    acts = rig.activities(channels(rig.receiver.url, timeout=0.5))
    async with Worker(
        client, task_queue=task_queue, workflows=[NotifyTwice], activities=[acts.notify]
    ):
        results = await client.execute_workflow(
            NotifyTwice.run,
            request(channel),
            id=f"notify-twice-{task_queue}",
            task_queue=task_queue,
            result_type=list[NotificationResult],
        )
    first = "already_sent" if uncertain else "sent"
    assert [r.status for r in results] == [first, "already_sent"]
    assert results[0].uncertain == uncertain
    assert len(rig.received(channel)) == 1


async def test_worker_sends_to_the_stack_receiver(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    task_queue: str,
    receiver_admin: ReceiverAdmin,
    redis: Redis,
) -> None:
    """The worker's own wiring (workers.worker.worker) with the shipped channels reaches the local
    stack's receiver, e-mail over STARTTLS with the receiver's certificate included."""
    async with running_worker(client, settings, stack, task_queue) as deps:
        for name in settings.notifications.channels:
            result = await ActivityEnvironment().run(deps.notify.notify, request(name))
            assert result.status == "sent", name
    got = await receiver_admin.notifications()
    assert sorted(n["channel"] for n in got) == sorted(
        "email" if name == "mail" else name for name in settings.notifications.channels
    )
    assert not await receiver_admin.rejections()


@pytest.mark.parametrize("channel", ["ding", "hook", "mail"])
async def test_redis_unreachable_holds_no_alarm(rig: Rig, channel: str) -> None:
    """Redis keeps the idempotency markers and the robots' pacing; with Redis refusing
    connections the message is still delivered (once per attempt, counted `unguarded`),
    instead of failing every attempt until Redis is back (a trial saw a fall told 61 s late)."""
    gone = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=2)
    config = channels(rig.receiver.url)
    mailer = SmtpMailer(rig.receiver.host, rig.receiver.smtp_port, rig.receiver.cert_file)
    secrets = ChannelSecrets.from_config(config, {})
    acts = NotifyActivities(rig.http, mailer, gone, config, secrets, rig.receiver.url)
    before = REGISTRY.get_sample_value(
        "riskflow_notifications_total", {"channel": channel, "outcome": "unguarded"}
    )
    try:
        result = await rig.notify(request(channel), acts)
    finally:
        await gone.aclose()
    assert result.status == "sent" and "Redis unreachable" in result.detail
    assert len(rig.received(channel if channel != "mail" else "email")) == 1
    after = REGISTRY.get_sample_value(
        "riskflow_notifications_total", {"channel": channel, "outcome": "unguarded"}
    )
    assert (after or 0) - (before or 0) == 1
