"""The Feishu app channel's pure parts: the incident card (card JSON 2.0) and how it changes
after a click, the API's answers (codes), and reading a `card.action.trigger` callback
(signature, window, token, app, the picked option). End to end: test_feishu_app_actions."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from aiohttp import web

from activities.notify.errors import RecipientRefused, Refused, TokenRefused
from activities.notify.feishu_app import FEISHU_APP, FeishuApp, check
from activities.notify.feishu_card import answered, card, content, uuid
from activities.notify.http import Answer, fresh_connection_session, verdict
from activities.notify.texts import render
from riskflow.config.channels import FeishuAppChannel
from riskflow.contracts.card_actions import ButtonKey
from riskflow.contracts.notifications import NOTIFY_RATE_LIMITED, NOTIFY_REJECTED
from tests.test_wecom_app_card import request
from workers.callbacks.feishu import FeishuReceiver
from workers.callbacks.feishu_crypto import FeishuCrypto
from workers.callbacks.rejection import CallbackRejected

APP_ID, TOKEN, ENCRYPT_KEY = "cli_a1b2c3", "verify-token", "encrypt-key"
CHANNEL = FeishuAppChannel(
    type="feishu_app",
    app_id=APP_ID,
    secret="app-secret",
    receive_ids=["oc_ops"],
    callback_token=TOKEN,
    callback_encrypt_key=ENCRYPT_KEY,
)


INCIDENT = "cam1-hazard-20261207T010203Z"


def built(kind: str = "opened", **changes: Any) -> dict[str, Any]:
    req = request(kind=kind, console_url="https://c/i", **changes)
    return card(render(req), req.incident_id, req.language, req.severity, req.console_url)


def actions(shown: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [e for e in shown["body"]["elements"] if e.get("element_id") == "actions"]
    return [col["elements"][0] for row in rows for col in row["columns"]]


def test_an_open_incident_card_offers_the_four_answers_each_keyed_to_the_incident() -> None:
    shown = built()
    assert shown["schema"] == "2.0" and shown["config"]["update_multi"] is True
    assert shown["header"]["template"] == "red"
    found = actions(shown)
    assert [a["element_id"] for a in found] == [
        "claim",
        "on_my_way",
        "false_alarm",
        "resolve",
        "console",
    ]
    keys = [a["behaviors"][0].get("value", {}).get("key") for a in found[:4]]
    decoded = [ButtonKey.decode(k) for k in keys]
    assert [d.action for d in decoded if d] == ["claim", "on_my_way", "false_alarm", "resolve"]
    assert {d.incident_id for d in decoded if d} == {INCIDENT}
    assert [o["value"] for o in found[1]["options"]] == ["5", "10", "15", "30"]
    assert [o["value"] for o in found[2]["options"]] == ["detector", "drill", "work", "other"]
    assert found[4]["behaviors"] == [{"type": "open_url", "default_url": "https://c/i"}]
    assert len(content(shown).encode()) < 30_000


def test_the_card_shows_no_state_field_its_own_line_says_what_happened_since() -> None:
    fields = next(e for e in built()["body"]["elements"] if e.get("element_id") == "fields")
    assert "状态" not in fields["text"]["content"] and "风险等级" in fields["text"]["content"]


def test_a_closing_message_has_no_actions_and_model_text_is_inert() -> None:
    assert actions(built("resolved")) == []
    hostile = built(summary="倒地\u202etxet desrever\u200b <at id=all></at> **x**")
    text = json.dumps(hostile, ensure_ascii=False)
    assert "\u202e" not in text and "\u200b" not in text
    shown = next(e for e in hostile["body"]["elements"] if e["tag"] == "div")
    assert shown["text"]["tag"] == "plain_text"  # never lark_md: no mention, no markup


def test_after_a_claim_everyone_sees_who_and_only_false_alarm_and_resolved_remain() -> None:
    shown = built()
    claimed = answered(shown, "认领: 王工 14:03, 预计 5 分钟到场", INCIDENT, "zh-CN", False)
    status = [e for e in claimed["body"]["elements"] if e.get("element_id") == "status"]
    assert status[0]["text"]["content"] == "认领: 王工 14:03, 预计 5 分钟到场"
    assert [a["element_id"] for a in actions(claimed)] == ["false_alarm", "resolve", "console"]
    again = answered(claimed, "已解除: 王工 14:20", INCIDENT, "zh-CN", True)
    assert actions(again) == []
    statuses = [e for e in again["body"]["elements"] if e.get("element_id") == "status"]
    assert [s["text"]["content"] for s in statuses] == ["已解除: 王工 14:20"]
    assert actions(shown)  # the card sent is left as it was


def test_a_messages_uuid_is_one_per_recipient_and_fits_feishus_50_characters() -> None:
    a, b = uuid("key-1", "oc_1"), uuid("key-1", "oc_2")
    assert a != b and a == uuid("key-1", "oc_1") and len(a) <= 50


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ({"code": 99991400, "msg": "request trigger frequency limit"}, NOTIFY_RATE_LIMITED),
        ({"code": 230020, "msg": "rate limit"}, NOTIFY_RATE_LIMITED),
        ({"code": 230002, "msg": "Bot/User can NOT be out of the chat."}, NOTIFY_REJECTED),
        ({"code": 230031, "msg": "card can not be updated"}, NOTIFY_REJECTED),
        ({"code": 10014, "msg": "app secret invalid"}, NOTIFY_REJECTED),
    ],
)
def test_feishus_codes_say_what_to_do(answer: dict[str, Any], kind: str) -> None:
    with pytest.raises(Refused) as raised:
        check(answer)
    assert raised.value.kind == kind


def test_a_refused_token_is_renewed_whether_feishu_answers_200_or_400() -> None:
    body = {"code": 99991663, "msg": "Invalid access token for authorization."}
    with pytest.raises(TokenRefused):
        check(body)
    with pytest.raises(TokenRefused):
        verdict(FEISHU_APP, Answer(400, None, json.dumps(body)))
    assert check({"code": 0, "msg": "success", "data": {"message_id": "om_1"}}) == "om_1"
    locked = {"code": 230099, "msg": "Failed to create card content, ext=card action is lock"}
    with pytest.raises(Refused) as raised:
        check(locked)
    assert raised.value.retryable  # another update at that moment: again later
    bad = {"code": 230099, "msg": "Failed to create card content, ext=ErrCode: 200621; ..."}
    with pytest.raises(Refused) as raised:
        check(bad)
    assert not raised.value.retryable  # the card itself: sending it again cannot help


def callback(**changes: Any) -> dict[str, Any]:
    key = ButtonKey("on_my_way", INCIDENT).encode()
    sent: dict[str, Any] = {
        "schema": "2.0",
        "header": {
            "event_id": "ev-1",
            "token": TOKEN,
            "create_time": str(int(time.time() * 1000)),
            "event_type": "card.action.trigger",
            "tenant_key": "tk",
            "app_id": APP_ID,
        },
        "event": {
            "operator": {"tenant_key": "tk", "open_id": "ou_wang", "union_id": "on_wang"},
            "token": "c-1",
            "action": {"value": {"key": key}, "tag": "select_static", "option": "15"},
            "host": "im_message",
            "context": {"open_message_id": "om_1", "open_chat_id": "oc_ops"},
        },
    }
    for path, value in changes.items():
        holder = sent
        *parents, last = path.split("__")
        for parent in parents:
            holder = holder[parent]
        holder[last] = value
    return sent


def delivered(
    body: dict[str, Any], now: float | None = None, sign_with: str = ENCRYPT_KEY
) -> tuple[dict[str, str], bytes]:
    crypto = FeishuCrypto(sign_with, TOKEN)
    raw = FeishuCrypto(ENCRYPT_KEY, TOKEN).seal(body)
    timestamp, nonce = str(int(now if now is not None else time.time())), "n0nce"
    headers = {
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": crypto.sign(timestamp, nonce, raw),
    }
    return headers, raw


def receiver() -> FeishuReceiver:
    api = FeishuApp(None, "http://unused", APP_ID, "s", 1.0)  # type: ignore[arg-type]
    return FeishuReceiver("ops-app", CHANNEL, FeishuCrypto(ENCRYPT_KEY, TOKEN), api)


def read(body: dict[str, Any], **kwargs: Any) -> Any:
    rx, now = receiver(), time.time()
    headers, raw = delivered(body, **kwargs)
    return rx.click(rx.open(headers, raw, now, 300), now)


def test_a_picked_arrival_time_and_a_picked_reason_come_with_their_click() -> None:
    click = read(callback())
    assert click.vendor == "feishu" and click.event_id == "ev-1"
    assert click.user_ids == {"union_id": "on_wang", "open_id": "ou_wang"}
    assert click.selected == {"eta": ["15"]}
    assert click.card_ref == {"message_id": "om_1", "open_id": "ou_wang"}
    assert abs(click.at - time.time()) < 60  # milliseconds read as such
    reason = callback(
        event__action={
            "value": {"key": ButtonKey("false_alarm", INCIDENT).encode()},
            "tag": "select_static",
            "option": "drill",
        }
    )
    assert ButtonKey.decode(read(reason).key) == ButtonKey("false_alarm", INCIDENT, "drill")
    strange = callback(
        event__action={
            "value": {"key": ButtonKey("false_alarm", INCIDENT).encode()},
            "option": "<script>",
        }
    )
    assert ButtonKey.decode(read(strange).key) == ButtonKey("false_alarm", INCIDENT)
    microseconds = callback(header__create_time=str(int(time.time() * 1_000_000)))
    assert abs(read(microseconds).at - time.time()) < 60


@pytest.mark.parametrize(
    ("body", "kwargs", "reason"),
    [
        (callback(), {"now": time.time() - 3600}, "stale"),
        (callback(), {"sign_with": "another key"}, "bad_signature"),
        (callback(header__token="forged"), {}, "bad_token"),
        (callback(header__app_id="cli_other"), {}, "wrong_receiver"),
        (callback(event__operator={"user_id": "u1"}), {}, "malformed"),
        (callback(header__event_id=""), {}, "malformed"),
    ],
)
def test_forged_stale_and_foreign_callbacks_are_refused(
    body: dict[str, Any], kwargs: dict[str, Any], reason: str
) -> None:
    with pytest.raises(CallbackRejected) as raised:
        read(body, **kwargs)
    assert raised.value.reason == reason


def test_missing_headers_and_a_nan_timestamp_are_refused() -> None:
    rx = receiver()
    headers, raw = delivered(callback())
    for dropped in headers:
        partial = {k: v for k, v in headers.items() if k != dropped}
        with pytest.raises(CallbackRejected):
            rx.open(partial, raw, time.time(), 300)
    with pytest.raises(CallbackRejected) as raised:
        rx.open({**headers, "X-Lark-Request-Timestamp": "nan"}, raw, time.time(), 300)
    assert raised.value.reason == "malformed"


def test_other_callbacks_are_answered_and_ignored() -> None:
    other = callback(header__event_type="im.message.receive_v1")
    assert read(other) is None


@pytest.mark.parametrize(
    ("body", "retryable"),
    [
        ({"code": 230099, "msg": "Failed to create card content, ext=card action is lock"}, True),
        ({"code": 18121, "msg": "the same create request is being processed"}, True),
        ({"code": 230049, "msg": "message is being sent"}, True),
        ({"code": 1500, "msg": "internal error"}, True),
        ({"code": 230001, "msg": "invalid param"}, False),
    ],
)
def test_feishus_code_decides_even_when_it_answers_http_400(
    body: dict[str, Any], retryable: bool
) -> None:
    with pytest.raises(Refused) as raised:
        verdict(FEISHU_APP, Answer(400, None, json.dumps(body)))
    assert raised.value.retryable is retryable


def test_a_recipient_out_of_reach_is_told_apart_from_a_failed_send() -> None:
    for code in (230002, 230013, 230029, 230035, 230053, 232009):
        with pytest.raises(RecipientRefused):
            verdict(FEISHU_APP, Answer(400, None, json.dumps({"code": code, "msg": "x"})))


def test_false_alarm_and_resolved_ask_for_a_confirmation_claim_does_not() -> None:
    found = {a["element_id"]: a for a in actions(built())}
    assert "confirm" in found["false_alarm"] and "confirm" in found["resolve"]
    assert "confirm" not in found["claim"] and "confirm" not in found["on_my_way"]
    assert found["resolve"]["confirm"]["title"]["content"] == "确认已解除并关闭?"


def test_an_unsigned_request_fails_the_same_way_whatever_is_wrong_with_it() -> None:
    """Telling bad padding from other failures would be a padding oracle (a captured click
    decrypted a block at a time): unsigned requests get one refusal."""
    rx, crypto = receiver(), FeishuCrypto(ENCRYPT_KEY, TOKEN)
    sealed = json.loads(crypto.seal({"type": "url_verification", "challenge": "c", "token": TOKEN}))
    raw = base64.b64decode(sealed["encrypt"])
    forged = [bytes([i]) + raw[1:] for i in range(0, 256, 17)]
    bodies = [json.dumps({"encrypt": base64.b64encode(f).decode()}).encode() for f in forged]
    bodies += [b"{}", b"not json", crypto.seal(callback())]
    reasons = set()
    for body in bodies:
        try:
            rx.open({}, body, time.time(), 300)
        except CallbackRejected as exc:
            reasons.add(exc.reason)
    assert reasons == {"malformed"}
    assert rx.open({}, json.dumps(sealed).encode(), time.time(), 300)["challenge"] == "c"


async def test_a_token_request_feishu_throttles_is_waited_out_not_refused() -> None:
    async def token(request: web.Request) -> web.Response:
        body = {"code": 99991400, "msg": "request trigger frequency limit"}
        return web.json_response(body, status=400, headers={"x-ogw-ratelimit-reset": "7"})

    app = web.Application()
    app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with fresh_connection_session() as session:
            api = FeishuApp(session, f"http://{host}:{port}", APP_ID, "s", 5.0)
            with pytest.raises(Refused) as raised:
                await api.send("chat_id", "oc_1", "interactive", "{}", "u")
    finally:
        await runner.cleanup()
    assert raised.value.kind == NOTIFY_RATE_LIMITED and raised.value.retry_after_seconds == 7
