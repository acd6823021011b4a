"""The local receiver's DingTalk app simulator (devstack.receivers.dingtalk_app) over real
HTTP: the receiver app on a loopback port, driven with aiohttp as the product would drive
api.dingtalk.com, and a small callback server of the test's own that checks what the
simulator's clicks deliver with workers.callbacks.dingtalk_crypto. The receiver's clock is
scripted (token lifetimes, signature timestamps), so nothing here waits but the click
deadline, set small."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devstack.localstack.process import free_port
from devstack.receivers import dingtalk_app
from devstack.receivers.limits import RateLimit
from devstack.receivers.records import Records
from devstack.receivers.server import build_app
from riskflow.config.channels import ChannelSecrets, NotificationSettings
from workers.callbacks.dingtalk_crypto import card_signature

APP_KEY, SECRET, CORP = "dingappkey1", "app-secret", "dingcorp1"
TEMPLATE, ROUTE, API_SECRET = "rf-incident.schema", "riskflow", "cb-secret"
GROUP = "cidGroupA+1=="
START = 1_700_000_000.0
DEADLINE = 0.5  # the simulator's click deadline here (DingTalk's: 2 s)
CREDENTIALS = {"app": (APP_KEY, SECRET), "other": ("dingother", "other-secret")}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def settings() -> NotificationSettings:
    app: dict[str, Any] = {
        "type": "dingtalk_app",
        "app_key": APP_KEY,
        "secret": SECRET,
        "corp_id": CORP,
        "card_template_id": TEMPLATE,
        "open_conversation_ids": [GROUP],
        "to_users": ["zhangsan", "lisi"],
        "callback_route_key": ROUTE,
        "callback_api_secret": API_SECRET,
    }
    key, secret = CREDENTIALS["other"]
    other = app | {"app_key": key, "secret": secret, "corp_id": "dingcorp2"}
    return NotificationSettings.model_validate({"channels": {"app": app, "other": other}})


def public(**changes: str) -> dict[str, str]:
    found = {
        "title": "Fall at Plant A",
        "lead": "critical · Plant A · cam1",
        "summary": "A person fell near the press.",
        "fields": "**Camera**: cam1",
        "status": "",
        "state": "open",
        "incident_id": "inc-1",
        "console_url": "https://console.example.com/incidents/inc-1",
    }
    return found | changes


def create(
    track: str = "rf-inc-1-group", space: str | None = None, **changes: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "cardTemplateId": TEMPLATE,
        "outTrackId": track,
        "callbackType": "HTTP",
        "callbackRouteKey": ROUTE,
        "cardData": {"cardParamMap": public()},
        "openSpaceId": space or f"dtv1.card//IM_GROUP.{GROUP}",
        "imGroupOpenSpaceModel": {"supportForward": False},
        "imGroupOpenDeliverModel": {"robotCode": APP_KEY},
        "userIdType": 1,
    }
    return body | changes


def robot(
    track: str = "rf-inc-1-zhangsan", user: str = "zhangsan", **changes: Any
) -> dict[str, Any]:
    body = create(track, f"dtv1.card//IM_ROBOT.{user}", **changes)
    body.pop("imGroupOpenSpaceModel", None)
    body.pop("imGroupOpenDeliverModel", None)
    model = {"spaceType": "IM_ROBOT", "robotCode": APP_KEY}
    return body | {"imRobotOpenDeliverModel": model} | changes


@dataclass
class Callbacks:
    """The product's callback URL, as this test plays it: keeps each request and answers
    with the next of `answers` (default `{}`)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def post(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        timestamp = headers.get("x-ddpaas-signature-timestamp", "")
        expected = card_signature(API_SECRET, timestamp)
        signed = headers.get("x-ddpaas-signature") == expected
        self.requests.append({"raw": raw, "headers": headers, "signed": signed})
        answer = self.answers.pop(0) if self.answers else {}
        return web.json_response(answer)

    async def never(self, request: web.Request) -> web.Response:
        await self.release.wait()  # answers only when the test ends
        return web.Response()


@dataclass
class Rig:
    base: str
    http: aiohttp.ClientSession
    records: Records
    clock: Clock
    callbacks: Callbacks
    callback_base: str

    async def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        async with self.http.request(method, self.base + path, **kwargs) as response:
            assert response.status == status, await response.text()
            return await response.json()

    async def token(self, channel: str = "app") -> str:
        key, secret = CREDENTIALS[channel]
        body = {"appKey": key, "appSecret": secret}
        answer = await self.call(
            "POST", f"/dingtalk-app/{channel}/v1.0/oauth2/accessToken", json=body
        )
        return str(answer["accessToken"])

    async def api(
        self,
        method: str,
        path: str,
        body: Any,
        status: int = 200,
        token: str | None = None,
        channel: str = "app",
    ) -> Any:
        token = token if token is not None else await self.token(channel)
        headers = {"x-acs-dingtalk-access-token": token} if token else {}
        path = f"/dingtalk-app/{channel}/v1.0{path}"
        return await self.call(method, path, status, json=body, headers=headers)

    async def register(self, path: str = "/cb", **changes: Any) -> Any:
        body: dict[str, Any] = {"callbackRouteKey": ROUTE, "callbackUrl": self.callback_base + path}
        body |= {"apiSecret": API_SECRET, "forceUpdate": True}
        return await self.api("POST", "/card/callbacks/register", body | changes)

    async def create(self, body: Any, status: int = 200) -> Any:
        return await self.api("POST", "/card/instances/createAndDeliver", body, status)

    async def update(self, body: Any, status: int = 200) -> Any:
        return await self.api("PUT", "/card/instances", body, status)

    async def cards(self) -> dict[str, dict[str, Any]]:
        found = await self.call("GET", "/admin/dingtalk-app/cards?channel=app")
        return {c["out_track_id"]: c for c in found}

    async def click(self, action: str = "claim", status: int = 200, **extra: Any) -> Any:
        body = {"channel": "app", "out_track_id": "rf-inc-1-group", "userid": "zhangsan"}
        body |= {"action_id": action}
        return await self.call("POST", "/admin/dingtalk-app/click", status, json=body | extra)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock, config = Clock(), settings()
    records, secrets = Records(clock), ChannelSecrets.from_config(config, {})
    app = build_app(config, secrets, records)
    app[dingtalk_app.SIMULATOR] = dingtalk_app.DingTalkAppSimulator(
        config, secrets, records, callback_deadline=DEADLINE
    )
    callbacks = Callbacks()
    product = web.Application()
    product.router.add_post("/cb", callbacks.post)
    product.router.add_post("/never", callbacks.never)
    runner, base = await serve(app)
    product_runner, product_base = await serve(product)
    http = aiohttp.ClientSession(trust_env=False)
    try:
        yield Rig(base, http, records, clock, callbacks, product_base)
    finally:
        callbacks.release.set()
        await http.close()
        await product_runner.cleanup()
        await runner.cleanup()


def codes(rig: Rig) -> list[str]:
    return [r["reason"].split()[1] for r in rig.records.rejections]


# -- access tokens -------------------------------------------------------------------------


async def test_the_same_token_is_renewed_while_it_lasts(rig: Rig) -> None:
    body = {"appKey": APP_KEY, "appSecret": SECRET}
    path = "/dingtalk-app/app/v1.0/oauth2/accessToken"
    first = await rig.call("POST", path, json=body)
    assert first["expireIn"] == 7200 and re.fullmatch(r"[0-9a-f]{32}", first["accessToken"])
    rig.clock.now += 7000
    again = await rig.call("POST", path, json=body)
    assert again == first  # same token, its 7200 s started again
    rig.clock.now += 7199
    path = "/card/instances/createAndDeliver"
    await rig.api("POST", path, create(), token=first["accessToken"])  # still alive
    rig.clock.now += 1  # lifetime over: refused, and a new one issued
    refused = await rig.api(
        "PUT", "/card/instances", {"outTrackId": "x"}, 400, token=first["accessToken"]
    )
    assert refused["code"] == "InvalidAuthentication"
    assert (await rig.token()) != first["accessToken"]


@pytest.mark.parametrize(
    "body",
    [
        {"appKey": APP_KEY, "appSecret": "wrong"},
        {"appKey": "dingelse", "appSecret": SECRET},
        {"appKey": APP_KEY},
        {},
    ],
)
async def test_wrong_credentials(rig: Rig, body: dict[str, str]) -> None:
    path = "/dingtalk-app/app/v1.0/oauth2/accessToken"
    answer = await rig.call("POST", path, 400, json=body)
    assert answer["code"] == "invalidClientIdOrSecret"
    assert answer["message"] == "无效的clientId或者clientSecret"
    assert re.fullmatch(r"[0-9A-F-]{36}", answer["requestid"])
    assert codes(rig) == ["invalidClientIdOrSecret"]


async def test_missing_bad_expired_and_foreign_tokens(rig: Rig) -> None:
    path = "/card/instances/createAndDeliver"
    missing = await rig.api("POST", path, create(), 400, token="")
    assert missing["code"] == "AuthenticationFailed.MissingParameter"
    assert missing["message"] == "缺少参数：x-acs-dingtalk-access-token"
    bad = await rig.api("POST", path, create(), 400, token="nope")
    assert bad["code"] == "InvalidAuthentication" and bad["message"] == "不合法的access_token"
    other = await rig.token("other")
    assert (await rig.api("POST", path, create(), 400, token=other))["code"] == (
        "InvalidAuthentication"
    )
    old = await rig.token()
    assert await rig.call("POST", "/admin/dingtalk-app/expire-tokens?channel=app") == {
        "ok": True,
        "expired": 1,
    }
    assert (await rig.api("POST", path, create(), 400, token=old))["code"] == (
        "InvalidAuthentication"
    )
    assert await rig.token() != old and not await rig.cards()


# -- callback routes -----------------------------------------------------------------------


async def test_a_route_is_kept_unless_forced(rig: Rig) -> None:
    answer = await rig.register(forceUpdate=False)
    url = rig.callback_base + "/cb"
    assert answer == {"success": True, "result": {"callbackUrl": url, "apiSecret": API_SECRET}}
    kept = await rig.register("/elsewhere", forceUpdate=False, apiSecret="new")
    assert kept["result"] == {"callbackUrl": url, "apiSecret": API_SECRET}  # the old one
    forced = await rig.register("/elsewhere", apiSecret="new")
    assert forced["result"]["callbackUrl"].endswith("/elsewhere")
    [route] = await rig.call("GET", "/admin/dingtalk-app/routes?channel=app")
    assert route["callback_route_key"] == ROUTE and route["api_secret"] == "new"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"callbackUrl": "https://x"}, "param.callbackRouteKeyEmpty"),
        ({"callbackRouteKey": ROUTE}, "param.callbackUrlEmpty"),
        ({}, "param.empty"),
    ],
)
async def test_register_refusals(rig: Rig, body: dict[str, str], code: str) -> None:
    raw = json.dumps(body).encode() if body else b""
    token = await rig.token()
    headers = {"x-acs-dingtalk-access-token": token, "Content-Type": "application/json"}
    path = "/dingtalk-app/app/v1.0/card/callbacks/register"
    assert (await rig.call("POST", path, 400, data=raw, headers=headers))["code"] == code


# -- createAndDeliver ----------------------------------------------------------------------


async def test_a_valid_card_goes_to_a_group_and_a_robot_chat(rig: Rig) -> None:
    answer = await rig.create(create())
    [group] = answer["result"]["deliverResults"]
    assert answer["success"] is True and answer["result"]["outTrackId"] == "rf-inc-1-group"
    assert group["spaceType"] == "IM_GROUP" and group["spaceId"] == GROUP
    assert group["success"] is True and group["carrierId"] and "errorMsg" not in group
    [one] = (await rig.create(robot()))["result"]["deliverResults"]
    assert (one["spaceType"], one["spaceId"], one["success"]) == ("IM_ROBOT", "zhangsan", True)
    cards = await rig.cards()
    assert (
        cards["rf-inc-1-group"]["public"] == public() and cards["rf-inc-1-group"]["private"] == {}
    )
    assert cards["rf-inc-1-group"]["template"] == TEMPLATE
    assert cards["rf-inc-1-group"]["warnings"] == [
        "callbackRouteKey 'riskflow' is not registered (yet)"
    ]
    notes = await rig.call("GET", "/admin/notifications", params={"channel": "app"})
    assert [n["title"] for n in notes] == ["Fall at Plant A"] * 2
    assert notes[0]["vendor"] == "dingtalk_app" and notes[0]["payload"] == create()


def _without(key: str) -> dict[str, Any]:
    body = create()
    del body[key]
    return body


def _param(value: Any) -> dict[str, Any]:
    return create(cardData={"cardParamMap": public() | {"eta_options": value}})


INVALID = {
    "no template": (_without("cardTemplateId"), "param.cardTemplateIdEmpty"),
    "unknown template": (create(cardTemplateId="other.schema"), "param.templateNotExist"),
    "no outTrackId": (_without("outTrackId"), "param.outTrackIdEmpty"),
    "no openSpaceId": (_without("openSpaceId"), "param.openSpaceIdEmpty"),
    "bad prefix": (create(openSpaceId=f"IM_GROUP.{GROUP}"), "param.openSpaceIdInvalid"),
    "bad space type": (create(openSpaceId="dtv1.card//CHAT.x"), "param.openSpaceIdInvalid"),
    "no cardData": (_without("cardData"), "param.cardPublicDataEmpty"),
    "a number": (_param(5), "param.invalid"),
    "a list": (_param(["5", "10"]), "param.invalid"),
    "a boolean": (_param(True), "param.invalid"),
    "a null": (_param(None), "param.invalid"),
    "private number": (
        create(privateData={"zhangsan": {"cardParamMap": {"state": 1}}}),
        "param.invalid",
    ),
    "value over 1 KB": (_param("x" * 1025), "param.invalid"),
    "no group model": (_without("imGroupOpenDeliverModel"), "param.openDeliverModelEmpty"),
    "another robot": (
        create(imGroupOpenDeliverModel={"robotCode": "dingother"}),
        "param.openDeliverModelError",
    ),
    "no robot model": (
        robot(imRobotOpenDeliverModel=None),
        "param.openDeliverModelEmpty",
    ),
    "space model without supportForward": (
        create(imGroupOpenSpaceModel={}),
        "param.openSpaceModelInvalid",
    ),
    "lower-case callbackType": (create(callbackType="http"), "param.invalid"),
    "HTTP without route": (_without("callbackRouteKey"), "param.invalid"),
    "userIdType 3": (create(userIdType=3), "param.invalid"),
}


@pytest.mark.parametrize("case", INVALID)
async def test_each_invalid_card_is_refused_with_its_code(rig: Rig, case: str) -> None:
    body, code = INVALID[case]
    answer = await rig.create(body, status=400)
    assert answer["code"] == code, answer
    assert answer["requestid"] and not await rig.cards() and not rig.records.notifications
    assert codes(rig) == [code]


async def test_an_out_track_id_is_spent_even_where_delivery_failed(rig: Rig) -> None:
    space = f"dtv1.card//IM_GROUP.cidUnknown;im_robot.wangwu;IM_GROUP.{GROUP}"
    body = create("rf-inc-2", space) | {"imRobotOpenDeliverModel": {"robotCode": APP_KEY}}
    results = (await rig.create(body))["result"]["deliverResults"]
    assert [(r["spaceType"], r["success"]) for r in results] == [
        ("IM_GROUP", False),
        ("IM_ROBOT", False),
        ("IM_GROUP", True),
    ]
    assert results[0]["errorMsg"] and "carrierId" not in results[0]
    again = await rig.create(body, status=400)
    assert again["code"] == "param.cardAlreadyExist" and again["message"] == again["code"]
    card = (await rig.cards())["rf-inc-2"]
    assert card["warnings"][0].startswith("imRobotOpenDeliverModel.spaceType")


async def test_template_problems_are_warnings(rig: Rig) -> None:
    data = {"title": "T", "state": "pending", "colour": "red", "eta_options": "5,10"}
    data |= {"label_claim": "认领", "label_eta_30": "30 分钟"}  # the labels are variables
    await rig.create(create(cardData={"cardParamMap": data}))
    warnings = (await rig.cards())["rf-inc-1-group"]["warnings"]
    assert [w.split(":")[0] for w in warnings] == [
        "cardData.cardParamMap.colour",
        "cardData.cardParamMap.incident_id",
        "cardData.cardParamMap.state",
        "cardData.cardParamMap.eta_options",
        "callbackRouteKey 'riskflow' is not registered (yet)",
    ]


# -- PUT /v1.0/card/instances --------------------------------------------------------------


async def test_put_replaces_unless_by_key_and_keeps_private_data(rig: Rig) -> None:
    await rig.create(create())
    merge = {"updateCardDataByKey": True, "updatePrivateDataByKey": True}
    claimed = {"state": "claimed", "status": "Claimed by Zhang"}
    body = {"outTrackId": "rf-inc-1-group", "cardData": {"cardParamMap": claimed}}
    assert await rig.update(body | {"cardUpdateOptions": merge}) == {
        "success": True,
        "result": True,
    }
    assert (await rig.cards())["rf-inc-1-group"]["public"] == public(**claimed)
    reasons = {"zhangsan": {"cardParamMap": {"state": "reasons"}}}
    await rig.update({"outTrackId": "rf-inc-1-group", "privateData": reasons})
    private = {"zhangsan": {"cardParamMap": {"status": "mine"}}}
    await rig.update(
        {"outTrackId": "rf-inc-1-group", "privateData": private, "cardUpdateOptions": merge}
    )
    card = (await rig.cards())["rf-inc-1-group"]
    assert card["private"] == {"zhangsan": {"state": "reasons", "status": "mine"}}
    await rig.update(body)  # no options: the public data is replaced
    card = (await rig.cards())["rf-inc-1-group"]
    assert card["public"] == claimed and len(card["updates"]) == 4
    assert card["private"]["zhangsan"]["state"] == "reasons"  # untouched
    assert any("title: required" in w for w in card["updates"][-1]["warnings"])


async def test_put_refusals(rig: Rig) -> None:
    await rig.create(create())
    data = {"cardData": {"cardParamMap": {"state": "closed"}}}
    unknown = await rig.update({"outTrackId": "nope"} | data, status=400)
    assert unknown["code"] == "param.cardNotExist"
    assert (await rig.update(data, status=400))["code"] == "param.outTrackIdEmpty"
    both = await rig.update({"outTrackId": "rf-inc-1-group"}, status=400)
    assert both["code"] == "param.cardDataAndPrivateDataBothEmpty"
    number = {"outTrackId": "rf-inc-1-group", "cardData": {"cardParamMap": {"state": 0}}}
    assert (await rig.update(number, status=400))["code"] == "param.invalid"
    other = await rig.api(
        "PUT", "/card/instances", {"outTrackId": "rf-inc-1-group"} | data, 400, channel="other"
    )
    assert other["code"] == "param.cardNotExist"  # another app's card
    assert (await rig.cards())["rf-inc-1-group"]["public"] == public()


# -- faults and the rate limit -------------------------------------------------------------


async def test_scripted_faults_and_the_rate_limit(rig: Rig) -> None:
    busy = {"code": "system.busy", "message": "system.busy", "requestid": "r1"}
    fault = {"channel": "app", "times": 1, "status": 500, "body": busy}
    await rig.call("POST", "/admin/faults", json={"faults": [fault]})
    assert await rig.create(create(), status=500) == busy and not await rig.cards()
    assert (await rig.create(create()))["success"] is True  # so its outTrackId was free
    late = fault | {"delay_seconds": 0.01}  # the call takes effect, its answer comes late
    await rig.call("POST", "/admin/faults", json={"faults": [late]})
    assert (await rig.create(create("rf-inc-3")))["success"] is True
    assert "rf-inc-3" in await rig.cards()
    rig.records.limits.append(RateLimit("app", count=1, window_seconds=1))
    assert (await rig.create(create("rf-inc-4")))["success"] is True
    limited = await rig.create(create("rf-inc-5"), status=403)
    assert limited["code"] == "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
    assert "rf-inc-5" not in await rig.cards()


# -- clicks --------------------------------------------------------------------------------


async def test_a_click_arrives_as_dingtalk_sends_it(rig: Rig) -> None:
    await rig.register()
    await rig.create(create())
    answer = await rig.click()
    [delivery] = answer["deliveries"]
    assert delivery["status"] == 200 and delivery["timed_out"] is False
    assert delivery["applied"] is False  # the product answered {}
    assert answer["params"] == {"incident": "inc-1"}
    [request] = rig.callbacks.requests
    content = '{"cardPrivateData":{"actionIds":["claim"],"params":{"incident":"inc-1"}}}'
    expected = {
        "type": "actionCallback",
        "outTrackId": "rf-inc-1-group",
        "corpId": CORP,
        "userId": "zhangsan",
        "content": content,
    }
    assert request["raw"] == json.dumps(expected, separators=(",", ":")).encode()
    timestamp = str(int(START * 1000))
    assert request["headers"]["x-ddpaas-signature-timestamp"] == timestamp
    assert request["headers"]["x-ddpaas-signature"] == card_signature(API_SECRET, timestamp)
    assert request["signed"] and request["headers"]["content-type"] == "application/json"
    [click] = (await rig.cards())["rf-inc-1-group"]["clicks"]
    assert click["userid"] == "zhangsan" and click["action_id"] == "claim"


async def test_the_answer_updates_the_card_for_everyone_or_the_clicker(rig: Rig) -> None:
    await rig.register()
    await rig.create(create())
    mine = {"userPrivateData": {"cardParamMap": {"state": "reasons"}}}
    rig.callbacks.answers.append(mine | {"cardUpdateOptions": {"updatePrivateDataByKey": True}})
    [delivery] = (await rig.click("false_alarm"))["deliveries"]
    assert delivery["applied"] is True
    card = (await rig.cards())["rf-inc-1-group"]
    assert card["private"] == {"zhangsan": {"state": "reasons"}} and card["public"] == public()
    await rig.click("claim", status=409)  # zhangsan sees the reasons now
    await rig.click("claim", status=200, userid="lisi")  # lisi still sees the four buttons
    closed = {"cardData": {"cardParamMap": {"state": "closed", "status": "False alarm"}}}
    rig.callbacks.answers.append(closed | {"cardUpdateOptions": {"updateCardDataByKey": True}})
    await rig.click("false_alarm.drill")
    card = (await rig.cards())["rf-inc-1-group"]
    assert card["public"] == public(state="closed", status="False alarm")
    content = json.loads(json.loads(rig.callbacks.requests[-1]["raw"])["content"])
    assert content["cardPrivateData"]["actionIds"] == ["false_alarm.drill"]
    await rig.click("resolve", status=409, userid="lisi")  # closed: no buttons


async def test_on_my_way_sends_the_chosen_eta(rig: Rig) -> None:
    await rig.register()
    options = json.dumps(["10", "20"])
    await rig.create(create(cardData={"cardParamMap": public(eta_options=options)}))
    assert (await rig.click("on_my_way"))["params"] == {"incident": "inc-1", "eta": "10"}
    chosen = await rig.click("on_my_way", params={"eta": "20"})
    assert chosen["params"] == {"incident": "inc-1", "eta": "20"}
    await rig.click("on_my_way", status=400, params={"eta": "5"})
    await rig.click("claim", status=400, params={"eta": "10"})
    await rig.click("claim", status=400, params={"eta": 10})


async def test_identical_deliveries_and_the_stream_sample_extras(rig: Rig) -> None:
    await rig.register()
    await rig.create(robot())
    answer = await rig.click(out_track_id="rf-inc-1-zhangsan", deliveries=3, extras=True)
    assert [d["status"] for d in answer["deliveries"]] == [200, 200, 200]
    first, *rest = rig.callbacks.requests
    assert all(r["raw"] == first["raw"] and r["headers"] == first["headers"] for r in rest)
    body = json.loads(first["raw"])
    assert (body["spaceType"], body["spaceId"], body["userIdType"]) == ("IM_ROBOT", "zhangsan", 1)
    assert body["value"] == body["content"] and body["extension"] == "{}"
    await rig.click(out_track_id="rf-inc-1-zhangsan", userid="lisi", status=409)


@pytest.mark.parametrize("tamper", ["signature", "stale_timestamp", "corp", "track"])
async def test_tampered_clicks(rig: Rig, tamper: str) -> None:
    await rig.register()
    await rig.create(create())
    await rig.click(tamper=tamper)
    [request] = rig.callbacks.requests
    body, timestamp = json.loads(request["raw"]), request["headers"]["x-ddpaas-signature-timestamp"]
    assert request["signed"] is (tamper != "signature")
    assert (int(timestamp) == int(START * 1000) - 3_600_000) is (tamper == "stale_timestamp")
    assert (body["corpId"] != CORP) is (tamper == "corp")
    assert (body["outTrackId"] != "rf-inc-1-group") is (tamper == "track")


async def test_a_route_without_api_secret_sends_no_signature(rig: Rig) -> None:
    await rig.register(apiSecret=None)
    await rig.create(create())
    await rig.click()
    [request] = rig.callbacks.requests
    assert not any(k.startswith("x-ddpaas") for k in request["headers"])
    await rig.click(tamper="signature", status=400)


async def test_a_callback_that_never_answers_times_out(rig: Rig) -> None:
    await rig.register("/never")
    await rig.create(create())
    [delivery] = (await rig.click())["deliveries"]
    assert delivery["timed_out"] is True and delivery["status"] is None
    assert delivery["applied"] is False


async def test_click_refusals(rig: Rig) -> None:
    await rig.create(create())
    await rig.click(status=409)  # the route is not registered
    await rig.register()
    await rig.click(out_track_id="nope", status=404)
    await rig.click(action="false_alarm.work", status=409)  # not in the open state
    await rig.click(deliveries=6, status=400)
    await rig.click(tamper="nope", status=400)
    await rig.create(create("rf-stream", callbackType="STREAM"))
    await rig.click(out_track_id="rf-stream", status=409)
    bad = {"state": "reasons"}
    await rig.create(create("rf-bad", cardData={"cardParamMap": public(**bad)}))
    await rig.click(out_track_id="rf-bad", action="false_alarm.other")  # the template says so
    assert len(rig.callbacks.requests) == 1


# -- the rest ------------------------------------------------------------------------------


async def test_reset_forgets_tokens_routes_and_cards(rig: Rig) -> None:
    token = await rig.token()
    await rig.register()
    await rig.create(create())
    await rig.call("POST", "/admin/reset")
    assert await rig.cards() == {} and not rig.records.notifications
    assert await rig.call("GET", "/admin/dingtalk-app/routes") == []
    path = "/card/instances/createAndDeliver"
    assert (await rig.api("POST", path, create(), 400, token=token))["code"] == (
        "InvalidAuthentication"
    )
    assert (await rig.create(create()))["success"] is True  # the outTrackId is free again


async def test_an_unknown_app_path_is_not_found(rig: Rig) -> None:
    path = "/dingtalk-app/nope/v1.0/oauth2/accessToken"
    await rig.call("POST", path, 404, json={"appKey": APP_KEY, "appSecret": SECRET})
