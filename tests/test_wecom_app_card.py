"""The WeCom app channel's pure parts: the card it sends (document/path/90236, 按钮交互型),
the button keys, the receive URL's parsing of a click (document/path/90240, crypto 90968)
and each way a forged or strange callback is refused, and the channel's configuration."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from activities.notify.cards import answered_line
from activities.notify.texts import render
from activities.notify.wecom_app import WeComApp
from activities.notify.wecom_card import (
    BUTTON,
    DESC,
    KEYNAME,
    SUB_TITLE,
    TITLE,
    VALUE,
    answered_card,
    message,
    task_id,
)
from riskflow.config.channels import NotificationSettings, WeComAppChannel
from riskflow.contracts.card_actions import MAX_KEY_BYTES, ButtonKey
from riskflow.contracts.notifications import (
    NOTIFY_CHANNEL_ERROR,
    NOTIFY_RATE_LIMITED,
    NOTIFY_REJECTED,
    NotificationRequest,
    RiskLevel,
)
from workers.callbacks.rejection import CallbackRejected
from workers.callbacks.wecom import WeComReceiver
from workers.callbacks.wecom_crypto import WeComCrypto

TOKEN, KEY, CORP = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7"
CHANNEL = WeComAppChannel.model_validate(
    {
        "type": "wecom_app",
        "corp_id": CORP,
        "agent_id": 1000002,
        "secret": "s",
        "to_users": ["WangGong", "LiWei"],
        "callback_token": TOKEN,
        "callback_aes_key": KEY,
    }
)
NOW = 1_700_000_000.0


def request(**extra: Any) -> NotificationRequest:
    fields: dict[str, Any] = {
        "idempotency_key": "inc-1:L0:shift-app",
        "channel": "shift-app",
        "kind": "opened",
        "incident_id": "cam1-hazard-20261207T010203Z",
        "site_id": "plant-a",
        "site_name": "一号厂区 Plant A",
        "camera_id": "cam1",
        "severity": RiskLevel.CRITICAL,
        "state": "notified",
        "situation": "fall",
        "summary": "有人倒在冲压机旁" * 30,
        "opened_at": datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC),
        "console_url": "https://console.example.com/incidents/x",
        "language": "zh-CN",
        "timezone": "Asia/Shanghai",
    }
    return NotificationRequest.model_validate({**fields, **extra})


def body_of(req: NotificationRequest) -> dict[str, Any]:
    return message(
        CHANNEL, render(req), req.incident_id, req.language, req.idempotency_key, req.console_url
    )


def test_an_open_incident_is_a_button_card_within_wecoms_lengths() -> None:
    body = body_of(request())
    assert body["msgtype"] == "template_card" and body["agentid"] == 1000002
    assert body["touser"] == "WangGong|LiWei" and "toparty" not in body
    assert body["enable_duplicate_check"] == 1 and body["duplicate_check_interval"] <= 14400
    card = body["template_card"]
    assert card["card_type"] == "button_interaction"
    assert re.fullmatch(r"[0-9A-Za-z_\-@]{1,128}", card["task_id"])
    assert len(card["main_title"]["title"]) <= TITLE and len(card["main_title"]["desc"]) <= DESC
    assert len(card["sub_title_text"]) <= SUB_TITLE and card["sub_title_text"].endswith("…")
    assert 1 <= len(card["horizontal_content_list"]) <= 6
    for item in card["horizontal_content_list"]:
        assert len(item["keyname"]) <= KEYNAME and len(item["value"]) <= VALUE
    texts = [b["text"] for b in card["button_list"]]
    assert texts == ["认领", "马上到", "误报", "已解除"] and all(len(t) <= BUTTON for t in texts)
    keys = [ButtonKey.decode(b["key"]) for b in card["button_list"]]
    assert [k.action for k in keys if k] == ["claim", "on_my_way", "false_alarm", "resolve"]
    assert {k.incident_id for k in keys if k} == {"cam1-hazard-20261207T010203Z"}
    options = card["button_selection"]["option_list"]
    assert 1 <= len(options) <= 10 and card["button_selection"]["question_key"] == "eta"
    assert card["card_action"] == {"type": 1, "url": "https://console.example.com/incidents/x"}


def test_model_text_stays_plain_text_and_a_console_less_card_has_no_action() -> None:
    body = body_of(request(summary="<@all> [x](http://evil) <font>", console_url=""))
    card = body["template_card"]
    assert card["sub_title_text"] == "<@all> [x](http://evil) <font>"  # not markup in a card
    assert "card_action" not in card


def test_direction_overrides_and_invisible_characters_never_reach_the_card() -> None:
    hostile = request(summary="safe\u202eefas\u200b ok", camera_id="cam\u202e1")
    card = body_of(hostile)["template_card"]
    assert card["sub_title_text"] == "safeefas ok"
    assert "\u202e" not in json.dumps(card, ensure_ascii=False)
    when = next(i["value"] for i in card["horizontal_content_list"] if "UTC" in i["value"])
    assert when.endswith("UTC+08:00")  # the site's offset whole, not cut


def test_a_closing_message_has_nothing_to_answer_and_goes_as_markdown() -> None:
    body = body_of(request(kind="resolved", state="resolved"))
    assert body["msgtype"] == "markdown" and "template_card" not in body
    assert body["markdown"]["content"]


def test_one_message_one_task_id_for_ever() -> None:
    assert task_id("a:L0:x") == task_id("a:L0:x") != task_id("a:L1:x")
    assert len(task_id("k" * 300)) <= 128


def test_button_keys_round_trip_and_foreign_ones_are_not_riskflows() -> None:
    key = ButtonKey("claim", "inc:with:colons")
    assert ButtonKey.decode(key.encode()) == key
    for foreign in ("", "claim", "rf1:launch:inc", "rf2:claim:inc", "rf1:claim:", "x:claim:i"):
        assert ButtonKey.decode(foreign) is None
    with pytest.raises(ValueError):
        ButtonKey("claim", "i" * MAX_KEY_BYTES).encode()


def test_after_a_claim_the_card_says_who_and_keeps_false_alarm_and_resolved() -> None:
    card = body_of(request())["template_card"]
    line = answered_line("on_my_way", "zh-CN", "王工", "14:03", 5)
    assert line == "认领: 王工 14:03, 预计 5 分钟到场"
    after = answered_card(card, line, "cam1-hazard-20261207T010203Z", "zh-CN")
    assert after["main_title"]["desc"] == line and after["task_id"] == card["task_id"]
    assert [b["text"] for b in after["button_list"]] == ["误报", "已解除"]
    assert "button_selection" not in after
    assert answered_line("resolve", "en", "Wang", "14:05", None) == "Resolved: Wang 14:05"


# -- the receive URL -------------------------------------------------------------------------


@pytest.fixture
async def rx() -> AsyncIterator[WeComReceiver]:
    """The channel's receiver (its API client is not called by these tests)."""
    async with aiohttp.ClientSession() as session:
        api = WeComApp(session, "http://127.0.0.1:9", CORP, 1000002, "s", 1.0)
        yield WeComReceiver("shift-app", CHANNEL, WeComCrypto(TOKEN, KEY, CORP), api)


def event_xml(**over: str) -> bytes:
    fields = {
        "ToUserName": CORP,
        "FromUserName": "WangGong",
        "CreateTime": str(int(NOW)),
        "MsgType": "event",
        "Event": "template_card_event",
        "EventKey": "rf1:claim:inc-1",
        "TaskId": "rf-abc",
        "CardType": "button_interaction",
        "ResponseCode": "RC1",
        "AgentID": "1000002",
        **over,
    }
    inner = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    picked = (
        "<SelectedItems><SelectedItem><QuestionKey><![CDATA[eta]]></QuestionKey>"
        "<OptionIds><OptionId><![CDATA[10]]></OptionId></OptionIds></SelectedItem></SelectedItems>"
    )
    return f"<xml>{inner}{picked}</xml>".encode()


def sealed(message: bytes, timestamp: str = str(int(NOW)), nonce: str = "1234567890") -> Any:
    return WeComCrypto(TOKEN, KEY, CORP).encrypt(message, timestamp, nonce)


def post(message: bytes, **query: str) -> tuple[dict[str, str], bytes]:
    s = sealed(message)
    q = {"msg_signature": s.signature, "timestamp": s.timestamp, "nonce": s.nonce, **query}
    body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{s.encrypt}]]>"
    return q, (body + "</Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>").encode()


async def test_a_click_is_read_with_its_choices_and_the_same_click_has_the_same_event_id(
    rx: WeComReceiver,
) -> None:
    query, body = post(event_xml())
    click = rx.click(query, body, NOW, 300)
    assert click is not None
    assert click.user_ids == {"userid": "WangGong"} and click.key == "rf1:claim:inc-1"
    assert click.selected == {"eta": ["10"]} and click.at == NOW
    assert click.card_ref == {"task_id": "rf-abc", "response_code": "RC1"}
    query2, body2 = post(event_xml(ResponseCode="RC2"))  # a retry: new nonce and prefix
    again = rx.click(query2, body2, NOW + 5, 300)
    assert again is not None and again.event_id == click.event_id
    other = rx.click(*post(event_xml(CreateTime=str(int(NOW) + 1))), NOW, 300)
    assert other is not None and other.event_id != click.event_id


async def test_other_events_are_answered_and_ignored(rx: WeComReceiver) -> None:
    assert rx.click(*post(event_xml(Event="enter_agent")), NOW, 300) is None
    assert rx.click(*post(event_xml(MsgType="text")), NOW, 300) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda q, b: ({**q, "msg_signature": "0" * 40}, b), "bad_signature"),
        (lambda q, b: ({k: v for k, v in q.items() if k != "nonce"}, b), "malformed"),
        (lambda q, b: ({**q, "timestamp": str(int(NOW) - 60)}, b), "bad_signature"),
        (lambda q, b: (q, b"<xml><Encrypt>"), "malformed"),
        (lambda q, b: (q, b"not xml"), "malformed"),
    ],
)
async def test_forged_and_broken_callbacks_are_refused(
    change: Any, reason: str, rx: WeComReceiver
) -> None:
    query, body = change(*post(event_xml()))
    with pytest.raises(CallbackRejected) as refused:
        rx.click(query, body, NOW, 300)
    assert refused.value.reason == reason


async def test_a_replayed_callback_outside_the_window_is_refused_before_decrypting(
    rx: WeComReceiver,
) -> None:
    query, body = post(event_xml())
    with pytest.raises(CallbackRejected) as refused:
        rx.click(query, body, NOW + 301, 300)
    assert refused.value.reason == "stale"


async def test_another_apps_click_and_an_entity_bomb_are_refused(rx: WeComReceiver) -> None:
    with pytest.raises(CallbackRejected) as refused:
        rx.click(*post(event_xml(AgentID="1000003")), NOW, 300)
    assert refused.value.reason == "wrong_receiver"
    dtd = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaa">]>'
    bomb = dtd + b"<xml><Encrypt>&a;</Encrypt></xml>"
    s = sealed(b"x")
    query = {"msg_signature": s.signature, "timestamp": s.timestamp, "nonce": s.nonce}
    with pytest.raises(CallbackRejected) as refused:
        rx.click(query, bomb, NOW, 300)
    assert refused.value.reason == "malformed"


async def test_the_url_check_answers_the_echostr(rx: WeComReceiver) -> None:
    s = sealed(b"1616140317555161061")
    query = {"msg_signature": s.signature, "timestamp": s.timestamp, "nonce": s.nonce}
    assert rx.url_check({**query, "echostr": s.encrypt}, NOW, 300) == b"1616140317555161061"
    with pytest.raises(CallbackRejected):
        rx.url_check(query, NOW, 300)


# -- configuration ---------------------------------------------------------------------------


def config(**over: Any) -> dict[str, Any]:
    channel = {
        "type": "wecom_app",
        "corp_id": CORP,
        "agent_id": 1000002,
        "secret_env": "WECOM_APP_SECRET",
        "to_users": ["WangGong"],
        "callback_token_env": "WECOM_CB_TOKEN",
        "callback_aes_key_env": "WECOM_CB_KEY",
        **over,
    }
    return {"channels": {"shift-app": {k: v for k, v in channel.items() if v is not None}}}


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"to_users": None}, "to_users, to_parties or to_tags"),
        ({"secret_env": None}, "secret"),
        ({"callback_token_env": None}, "callback_token"),
        ({"callback_aes_key_env": None, "callback_aes_key": "short"}, "43 characters"),
        ({"callback_token": "t"}, "not both"),
        ({"agent_id": 0}, "greater than 0"),
        ({"corp_id": "ww x"}, "pattern"),
    ],
)
def test_an_incomplete_app_channel_is_refused_naming_what_is_missing(
    over: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        NotificationSettings.model_validate(config(**over))


def test_the_app_channel_reads_its_callback_secrets_from_the_environment() -> None:
    from riskflow.config.channels import ChannelSecrets
    from riskflow.errors import ConfigError

    settings = NotificationSettings.model_validate(config())
    assert settings.app_channels() == ["shift-app"]
    env = {"WECOM_APP_SECRET": "s", "WECOM_CB_TOKEN": "t", "WECOM_CB_KEY": KEY}
    secrets = ChannelSecrets.from_config(settings, env)
    assert secrets.callback("shift-app") == ("t", KEY) and secrets.secret("shift-app") == "s"
    with pytest.raises(ConfigError, match="callback_aes_key_env"):
        ChannelSecrets.from_config(settings, {**env, "WECOM_CB_KEY": ""})
    assert json.dumps(settings.model_dump(mode="json")).count(KEY) == 0


async def test_a_nan_timestamp_never_passes_the_replay_window(rx: WeComReceiver) -> None:
    query, body = post(event_xml())
    with pytest.raises(CallbackRejected) as refused:
        rx.click({**query, "timestamp": "nan"}, body, NOW, 300)
    assert refused.value.reason == "malformed"


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ({"errcode": 45033, "errmsg": "api freq out of limit"}, NOTIFY_RATE_LIMITED),
        ({"errcode": -1, "errmsg": "system busy"}, NOTIFY_CHANNEL_ERROR),
        ({"errcode": 60020, "errmsg": "not allow to access from your ip"}, NOTIFY_REJECTED),
        ({"errcode": 48002, "errmsg": "api forbidden"}, NOTIFY_REJECTED),
        ({"errcode": 81013, "errmsg": "user & party & tag all invalid"}, NOTIFY_REJECTED),
        ({"errcode": 60140, "errmsg": "invalid response_code"}, NOTIFY_REJECTED),
        ({"errcode": 50001, "errmsg": "something new"}, NOTIFY_CHANNEL_ERROR),
    ],
)
def test_wecoms_codes_are_sorted_into_retry_later_never_and_retry(
    answer: dict[str, Any], kind: str
) -> None:
    from activities.notify.errors import Refused
    from activities.notify.wecom_app import check

    with pytest.raises(Refused) as refused:
        check(answer)
    assert refused.value.kind == kind


def test_a_token_refusal_and_a_taken_task_id_are_told_apart_from_errors() -> None:
    from activities.notify.wecom_app import TaskIdTaken, TokenRefused, check

    for code in (40014, 42001, 41001):
        with pytest.raises(TokenRefused):
            check({"errcode": code, "errmsg": "token"})
    with pytest.raises(TaskIdTaken):
        check({"errcode": 42014, "errmsg": "taskid has existed"})
    detail = check({"errcode": 0, "errmsg": "ok", "msgid": "m1", "invaliduser": "ghost"})
    assert detail == "msgid=m1 invaliduser=ghost"


def test_a_false_alarms_reason_travels_in_its_key_and_nothing_else_takes_one() -> None:
    key = ButtonKey("false_alarm", "inc:1", "drill")
    assert key.encode() == "rf1:false_alarm.drill:inc:1" and ButtonKey.decode(key.encode()) == key
    assert ButtonKey.decode("rf1:false_alarm.:inc") == ButtonKey("false_alarm", "inc")
    assert ButtonKey.decode("rf1:claim.drill:inc") is None
    assert ButtonKey.decode("rf1:false_alarm.bored:inc") is None
    with pytest.raises(ValueError):
        ButtonKey("claim", "inc", "drill").encode()


def test_the_reasons_card_keeps_the_task_and_offers_every_reason() -> None:
    from activities.notify.wecom_card import reasons_card

    card = body_of(request())["template_card"]
    asked = reasons_card(card, card["task_id"], "inc-9", "zh-CN")
    assert asked["task_id"] == card["task_id"] and asked["main_title"]["desc"] == "误报原因?"
    keys = [ButtonKey.decode(b["key"]) for b in asked["button_list"]]
    assert [k.reason for k in keys if k] == ["detector", "drill", "work", "other"]
    assert "button_selection" not in asked
    bare = reasons_card(None, "rf-x", "inc-9", "en")
    assert bare["card_type"] == "button_interaction" and bare["task_id"] == "rf-x"
    line = answered_line("false_alarm", "zh-CN", "王工", "14:05", None, "work")
    assert line == "误报(已知作业): 王工 14:05"


def test_a_receive_url_takes_at_most_its_requests_a_second() -> None:
    from workers.callbacks.app import Pace

    pace = Pace(per_second=2)
    assert [pace.admit("a", 10.0), pace.admit("a", 10.1), pace.admit("a", 10.2)] == [
        True,
        True,
        False,
    ]
    assert pace.admit("b", 10.2)  # per channel
    assert pace.admit("a", 11.05) and not pace.admit(
        "a", 11.09
    )  # 10.0 left the window, 10.1 not yet
