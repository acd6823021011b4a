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
from activities.notify.dingtalk_app import (
    DELIVERY,
    DINGTALK_APP,
    UPDATE,
    CardExists,
    DingTalkApp,
    check_delivery,
    check_update,
)
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
TRACK = dingtalk_card.out_track_id("key-1", INCIDENT, SECRET)


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


def test_one_card_for_every_space_with_each_robot_and_a_sealed_track_id() -> None:
    assert dingtalk_card.spaces(CHANNEL) == ["IM_GROUP.cid1==", "IM_ROBOT.manager4220"]
    body = dingtalk_card.delivery(CHANNEL, TRACK, {"title": "t"})
    assert body["openSpaceId"] == "dtv1.card//IM_GROUP.cid1==;IM_ROBOT.manager4220"
    assert body["imGroupOpenDeliverModel"] == {"robotCode": "dingkey"}
    assert body["imRobotOpenDeliverModel"] == {"spaceType": "IM_ROBOT", "robotCode": "dingkey"}
    assert body["imGroupOpenSpaceModel"] == {"supportForward": False}  # no live copies elsewhere
    assert body["callbackType"] == "HTTP" and body["callbackRouteKey"] == "riskflow"
    groups_only = CHANNEL.model_copy(update={"to_users": []})
    assert "imRobotOpenDeliverModel" not in dingtalk_card.delivery(groups_only, TRACK, {})
    assert len(TRACK) <= 64 and dingtalk_card.ours(TRACK, INCIDENT, SECRET)
    assert not dingtalk_card.ours(TRACK, "another-incident", SECRET)
    assert not dingtalk_card.ours(TRACK, INCIDENT, "another secret")
    assert not dingtalk_card.ours(TRACK + "-other", INCIDENT, SECRET)
    assert dingtalk_card.out_track_id("key-1", INCIDENT, SECRET) == TRACK  # every attempt
    assert dingtalk_card.out_track_id("key-2", INCIDENT, SECRET) != TRACK


def test_every_value_fits_dingtalks_kilobyte_never_cut_inside_a_character() -> None:
    req = request(summary="有人倒在冲压机旁" * 200)
    found = dingtalk_card.params(render(req), req.incident_id, req.language, req.console_url)
    assert all(len(v.encode()) <= 1000 for v in found.values())
    assert found["summary"].endswith("…")
    assert len(dingtalk_card.status("认领: " + "王" * 500).encode()) <= 1000


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
        verdict(DELIVERY, Answer(400, None, '{"code":"param.cardAlreadyExist"}'))
    nowhere = {"result": {"deliverResults": [{"success": False, "errorMsg": "no", "spaceId": "c"}]}}
    with pytest.raises(Refused) as raised:
        check_delivery(nowhere)
    assert not raised.value.retryable  # its outTrackId is spent: a retry would find it
    some = {
        "success": True,
        "result": {
            "deliverResults": [
                {"success": True, "spaceType": "IM_GROUP", "spaceId": "c1"},
                {"success": False, "spaceType": "IM_GROUP", "spaceId": "c2", "errorMsg": "left"},
            ]
        },
    }
    assert check_delivery(some) == "delivered to 1 of 2 space(s); refused: IM_GROUP.c2: left"
    for empty in ({}, {"success": True, "result": {"deliverResults": []}}):
        with pytest.raises(Refused):
            check_delivery(empty)  # an answer without results is no delivery
    with pytest.raises(Refused):
        check_update({"success": True, "result": False})
    assert check_update({"success": True, "result": True}) == "updated"


def test_an_ip_ban_and_the_per_second_limit_are_waited_out_not_refused() -> None:
    ban = '{"status":1111,"wait":5,"message":"blocked"}'
    for answer in (Answer(200, None, ban), Answer(403, None, ban), Answer(403, None, "<html/>")):
        with pytest.raises(Refused) as raised:
            verdict(DELIVERY, answer)
        assert raised.value.kind == NOTIFY_RATE_LIMITED and raised.value.retry_after_seconds == 300
    qps = '{"code":"Forbidden.AccessDenied.QpsLimitForAppkeyAndApi","message":"qps"}'
    with pytest.raises(Refused) as raised:
        verdict(DELIVERY, Answer(403, None, qps))
    assert raised.value.kind == NOTIFY_RATE_LIMITED and raised.value.retry_after_seconds == 2
    busy = '{"code":"system.busy","message":"busy"}'
    with pytest.raises(Refused) as raised:
        verdict(UPDATE, Answer(400, None, busy))
    assert raised.value.retryable  # DingTalk's code decides, not its HTTP 400


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
    for picked in (30, 30.0, {"value": "30"}, {"value": 30}):  # Map<String, Object>
        eta = {
            "cardPrivateData": {
                "actionIds": ["on_my_way"],
                "params": {"incident": INCIDENT, "eta": picked},
            }
        }
        assert read(callback(content=json.dumps(eta))).selected == {"eta": ["30"]}
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
