"""The DingTalk app channel's pure parts: the template's variables and the createAndDeliver
body, the card's sealed outTrackId, DingTalk's error codes, and reading a card callback
(signature of the time, window, corp, the card and incident the body claims). End to end:
test_dingtalk_app_actions."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from activities.notify import dingtalk_card
from activities.notify.dingtalk_app import DINGTALK_APP, CardExists, DingTalkApp, check
from activities.notify.errors import Refused, TokenRefused
from activities.notify.http import Answer, verdict
from activities.notify.texts import render
from riskflow.config.channels import DingTalkAppChannel
from riskflow.contracts.card_actions import ButtonKey
from riskflow.contracts.notifications import NOTIFY_RATE_LIMITED, NOTIFY_REJECTED
from tests.test_wecom_app_card import request
from workers.callbacks.dingtalk import DingTalkReceiver
from workers.callbacks.dingtalk_crypto import card_signature
from workers.callbacks.rejection import CallbackRejected

CORP, SECRET, INCIDENT = "dingcorp", "route-secret", "cam1-hazard-20261207T010203Z"
CHANNEL = DingTalkAppChannel(
    type="dingtalk_app",
    app_key="dingkey",
    secret="s",
    corp_id=CORP,
    card_template_id="riskflow-incident.schema",
    open_conversation_ids=["cid1=="],
    to_users=["manager4220"],
    callback_route_key="riskflow",
    callback_api_secret=SECRET,
)
TRACK = dingtalk_card.out_track_id("key-1", "dtv1.card//IM_GROUP.cid1==", INCIDENT, SECRET)


def test_the_templates_variables_are_strings_in_the_sites_language() -> None:
    req = request()
    found = dingtalk_card.params(render(req), req.incident_id, req.language, req.console_url)
    assert all(isinstance(v, str) for v in found.values())
    assert found["state"] == "open" and found["status"] == "" and found["incident_id"] == INCIDENT
    assert found["label_claim"] == "认领" and found["label_reason_drill"] == "演练/测试"
    closing = request(kind="resolved")
    assert dingtalk_card.params(render(closing), INCIDENT, "zh-CN", "")["state"] == "closed"
    hostile = request(summary="倒地\u202eevil\u200b")
    summary = dingtalk_card.params(render(hostile), INCIDENT, "zh-CN", "")["summary"]
    assert "\u202e" not in summary and "\u200b" not in summary


def test_one_card_per_space_each_with_its_robot_and_a_sealed_track_id() -> None:
    spaces = dingtalk_card.spaces(CHANNEL)
    assert spaces == ["dtv1.card//IM_GROUP.cid1==", "dtv1.card//IM_ROBOT.manager4220"]
    group = dingtalk_card.delivery(CHANNEL, spaces[0], TRACK, {"title": "t"})
    assert group["imGroupOpenDeliverModel"] == {"robotCode": "dingkey"}
    assert group["callbackType"] == "HTTP" and group["callbackRouteKey"] == "riskflow"
    robot = dingtalk_card.delivery(CHANNEL, spaces[1], TRACK, {"title": "t"})
    assert robot["imRobotOpenDeliverModel"] == {"spaceType": "IM_ROBOT", "robotCode": "dingkey"}
    assert len(TRACK) <= 64 and dingtalk_card.ours(TRACK, INCIDENT, SECRET)
    assert not dingtalk_card.ours(TRACK, "another-incident", SECRET)
    assert not dingtalk_card.ours(TRACK, INCIDENT, "another secret")
    assert not dingtalk_card.ours(TRACK + "-other", INCIDENT, SECRET)
    again = dingtalk_card.out_track_id("key-1", spaces[0], INCIDENT, SECRET)
    assert again == TRACK != dingtalk_card.out_track_id("key-1", spaces[1], INCIDENT, SECRET)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (
            {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "message": "qps"},
            NOTIFY_RATE_LIMITED,
        ),
        ({"code": "param.templateNotExist", "message": "param.templateNotExist"}, NOTIFY_REJECTED),
        ({"code": "invalidClientIdOrSecret", "message": "无效"}, NOTIFY_REJECTED),
    ],
)
def test_dingtalks_codes_say_what_to_do(body: dict[str, Any], kind: str) -> None:
    with pytest.raises(Refused) as raised:
        verdict(
            DINGTALK_APP, Answer(400 if kind == NOTIFY_REJECTED else 403, None, json.dumps(body))
        )
    assert raised.value.kind == kind


def test_a_refused_token_an_existing_card_and_an_undelivered_one() -> None:
    with pytest.raises(TokenRefused):
        verdict(DINGTALK_APP, Answer(400, None, '{"code":"InvalidAuthentication","message":"x"}'))
    with pytest.raises(CardExists):
        verdict(DINGTALK_APP, Answer(400, None, '{"code":"param.cardAlreadyExist"}'))
    failed = {"success": True, "result": {"deliverResults": [{"success": False, "errorMsg": "no"}]}}
    with pytest.raises(Refused) as raised:
        check(failed)
    assert not raised.value.retryable  # its outTrackId is spent: a retry would find it
    done = {"success": True, "result": {"deliverResults": [{"success": True}]}}
    assert check(done) == "delivered to 1 space(s)" and check({"success": True}) == "ok"


def callback(**changes: Any) -> dict[str, Any]:
    content = {
        "cardPrivateData": {
            "actionIds": ["on_my_way"],
            "params": {"incident": INCIDENT, "eta": "15"},
        }
    }
    body = {
        "type": "actionCallback",
        "outTrackId": TRACK,
        "corpId": CORP,
        "userId": "manager4220",
        "content": json.dumps(content),
    }
    return body | changes


def receiver() -> DingTalkReceiver:
    api = DingTalkApp(None, "http://unused", "dingkey", "s", 1.0)  # type: ignore[arg-type]
    return DingTalkReceiver("ops-ding", CHANNEL, SECRET, api)


def read(
    body: dict[str, Any] | bytes, at: float | None = None, secret: str = SECRET, millis: bool = True
) -> Any:
    when = time.time() if at is None else at
    timestamp = str(int(when * 1000)) if millis else str(int(when))
    headers = {
        "x-ddpaas-signature-timestamp": timestamp,
        "x-ddpaas-signature": card_signature(secret, timestamp),
    }
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return receiver().click(headers, raw, time.time(), 300)


def test_a_click_is_read_with_its_arrival_time_and_a_reason_comes_in_its_action_id() -> None:
    click = read(callback())
    assert click.vendor == "dingtalk" and click.user_ids == {"userid": "manager4220"}
    assert ButtonKey.decode(click.key) == ButtonKey("on_my_way", INCIDENT)
    assert click.selected == {"eta": ["15"]} and click.card_ref["out_track_id"] == TRACK
    assert read(callback(), millis=False).key == click.key  # a time in seconds reads too
    reason = {
        "cardPrivateData": {"actionIds": ["false_alarm.drill"], "params": {"incident": INCIDENT}}
    }
    dismissed = read(callback(content=json.dumps(reason)))
    assert ButtonKey.decode(dismissed.key) == ButtonKey("false_alarm", INCIDENT, "drill")
    assert read(callback(type="somethingElse")) is None


@pytest.mark.parametrize(
    ("body", "kwargs", "reason"),
    [
        (callback(), {"at": time.time() - 3600}, "stale"),
        (callback(), {"secret": "another"}, "bad_signature"),
        (callback(corpId="another corp"), {}, "wrong_receiver"),
        (callback(outTrackId=TRACK + "x"), {}, "wrong_receiver"),
        (
            callback(
                content=json.dumps(
                    {"cardPrivateData": {"actionIds": ["claim"], "params": {"incident": "other"}}}
                )
            ),
            {},
            "wrong_receiver",  # a card of one incident cannot act on another
        ),
        (callback(content="not json"), {}, "malformed"),
        (callback(content=json.dumps({"cardPrivateData": {"actionIds": []}})), {}, "malformed"),
        (callback(userId=""), {}, "malformed"),
        (b"[1, 2]", {}, "malformed"),
    ],
)
def test_forged_stale_and_foreign_callbacks_are_refused(
    body: dict[str, Any] | bytes, kwargs: dict[str, Any], reason: str
) -> None:
    with pytest.raises(CallbackRejected) as raised:
        read(body, **kwargs)
    assert raised.value.reason == reason


def test_a_callback_without_its_signature_headers_or_with_a_strange_time_is_refused() -> None:
    raw = json.dumps(callback()).encode()
    for headers in (
        {},
        {"x-ddpaas-signature-timestamp": str(int(time.time() * 1000))},
        {
            "x-ddpaas-signature-timestamp": "nan",
            "x-ddpaas-signature": card_signature(SECRET, "nan"),
        },
    ):
        with pytest.raises(CallbackRejected) as raised:
            receiver().click(headers, raw, time.time(), 300)
        assert raised.value.reason == "malformed"
