"""The DingTalk app simulator's Stream mode (devstack.receivers.dingtalk_stream) over real
HTTP and WebSockets: the test plays the product's stream client with aiohttp's ws_connect,
opens connections as the SDK does, answers (or ignores) what the gateway pushes. Ordering
comes from the frames themselves: a click runs as a task while the test reads its push off
the socket; only the ack deadline (small here) is ever waited out."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from devstack.receivers import dingtalk_app
from devstack.receivers.records import Records
from devstack.receivers.server import build_app
from riskflow.config.channels import ChannelSecrets, DingTalkAppChannel, NotificationSettings
from tests.test_dingtalk_app_simulator import (
    APP_KEY,
    CORP,
    CREDENTIALS,
    GROUP,
    SECRET,
    TEMPLATE,
    Clock,
    create,
    public,
    robot,
    serve,
)

DEADLINE = 0.2  # the ack deadline here (DingTalk's callback deadline: 2 s)
TOPIC = "/v1.0/card/instances/callback"
CARD_SUB = [{"type": "CALLBACK", "topic": TOPIC}]
BOT_SUB = [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def stream_settings() -> NotificationSettings:
    """Two apps, as in the HTTP tests; `app` in stream mode where the config knows it (then
    without a callback route)."""
    channels: dict[str, dict[str, Any]] = {}
    for name, corp in (("app", CORP), ("other", "dingcorp2")):
        key, secret = CREDENTIALS[name]
        channels[name] = {"type": "dingtalk_app", "app_key": key, "secret": secret}
        channels[name] |= {"corp_id": corp, "card_template_id": TEMPLATE}
        channels[name] |= {"open_conversation_ids": [GROUP], "to_users": ["zhangsan", "lisi"]}
        channels[name] |= {"callback_route_key": "riskflow", "callback_api_secret": "cb-secret"}
    if "callback_mode" in DingTalkAppChannel.model_fields:
        channels["app"] |= {"callback_mode": "stream"}
        del channels["app"]["callback_route_key"], channels["app"]["callback_api_secret"]
    return NotificationSettings.model_validate({"channels": channels})


def stream_card(track: str = "rf-inc-1-group", **changes: Any) -> dict[str, Any]:
    body = create(track, callbackType="STREAM", **changes)
    body.pop("callbackRouteKey")
    return body


def ack(frame: dict[str, Any], response: Any = None, code: int = 200) -> dict[str, Any]:
    """What the SDK sends back: data `{"response": ...}` as a JSON string."""
    headers = {"contentType": "application/json", "messageId": frame["headers"]["messageId"]}
    data = json.dumps({"response": response})
    return {"code": code, "headers": headers, "message": "OK", "data": data}


@dataclass
class Rig:
    base: str
    http: aiohttp.ClientSession
    records: Records
    clock: Clock
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    async def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        async with self.http.request(method, self.base + path, **kwargs) as response:
            assert response.status == status, await response.text()
            return await response.json()

    async def open(
        self, channel: str = "app", subscriptions: Any = None, status: int = 200, **body: Any
    ) -> Any:
        key, secret = CREDENTIALS[channel]
        asked = {"clientId": key, "clientSecret": secret, "subscriptions": CARD_SUB}
        asked |= {"ua": "dingtalk-sdk-python/v0.24.3", "localIp": "10.0.0.5"}
        if subscriptions is not None:
            asked["subscriptions"] = subscriptions
        path = f"/dingtalk-app/{channel}/v1.0/gateway/connections/open"
        return await self.call("POST", path, status, json=asked | body)

    async def connect(
        self, channel: str = "app", subscriptions: Any = None
    ) -> aiohttp.ClientWebSocketResponse:
        opened = await self.open(channel, subscriptions)
        return await self.socket(opened)

    async def socket(self, opened: dict[str, str]) -> aiohttp.ClientWebSocketResponse:
        url = f"{opened['endpoint']}?ticket={opened['ticket']}"
        socket = await self.http.ws_connect(url, autoping=True)
        self.sockets.append(socket)
        return socket

    async def token(self) -> str:
        body = {"appKey": APP_KEY, "appSecret": SECRET}
        path = "/dingtalk-app/app/v1.0/oauth2/accessToken"
        return str((await self.call("POST", path, json=body))["accessToken"])

    async def create(self, body: Any, status: int = 200) -> Any:
        headers = {"x-acs-dingtalk-access-token": await self.token()}
        path = "/dingtalk-app/app/v1.0/card/instances/createAndDeliver"
        return await self.call("POST", path, status, json=body, headers=headers)

    def click(self, action: str = "claim", status: int = 200, **extra: Any) -> Awaitable[Any]:
        body = {"channel": "app", "out_track_id": "rf-inc-1-group", "userid": "zhangsan"}
        body |= {"action_id": action}
        path = "/admin/dingtalk-app/click"
        return asyncio.ensure_future(self.call("POST", path, status, json=body | extra))

    async def connections(self) -> list[dict[str, Any]]:
        return list(await self.call("GET", "/admin/dingtalk-app/connections?channel=app"))

    async def card(self, track: str = "rf-inc-1-group") -> dict[str, Any]:
        found = await self.call("GET", "/admin/dingtalk-app/cards?channel=app")
        return next(c for c in found if c["out_track_id"] == track)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock, config = Clock(), stream_settings()
    records, secrets = Records(clock), ChannelSecrets.from_config(config, {})
    app = build_app(config, secrets, records)
    app[dingtalk_app.SIMULATOR] = dingtalk_app.DingTalkAppSimulator(
        config,
        secrets,
        records,
        callback_deadline=DEADLINE,
        repush_seconds=0.01,
        repushes=2,
        disconnect_grace=0.01,
    )
    runner, base = await serve(app)
    http = aiohttp.ClientSession(trust_env=False)
    found = Rig(base, http, records, clock)
    try:
        yield found
    finally:
        for socket in found.sockets:
            await socket.close()
        await http.close()
        await runner.cleanup()


async def receive(socket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await socket.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    frame: dict[str, Any] = json.loads(message.data)
    return frame


# -- opening a connection ------------------------------------------------------------------


async def test_open_answers_an_endpoint_on_this_host_and_a_ticket(rig: Rig) -> None:
    opened = await rig.open()
    assert opened["endpoint"] == rig.base.replace("http", "ws") + "/dingtalk-app/app/stream/connect"
    assert re.fullmatch(UUID, opened["ticket"]) and set(opened) == {"endpoint", "ticket"}
    await rig.socket(opened)
    [connection] = await rig.connections()
    assert connection["subscriptions"] == CARD_SUB and connection["pings_answered"] == 0
    assert (connection["ua"], connection["local_ip"]) == ("dingtalk-sdk-python/v0.24.3", "10.0.0.5")
    assert connection["opened_at"] == rig.clock.now and connection["id"].startswith("conn-")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"clientSecret": "wrong"}, 401, "authFailed"),
        ({"clientId": "dingother"}, 401, "authFailed"),
        ({"clientSecret": None}, 400, "param.invalid"),
        ({"subscriptions": []}, 400, "param.invalid"),
        ({"subscriptions": [{"type": "PUSH", "topic": TOPIC}]}, 400, "param.invalid"),
    ],
)
async def test_open_refusals(rig: Rig, change: dict[str, Any], status: int, code: str) -> None:
    answer = await rig.open(status=status, **change)
    assert answer["code"] == code and re.fullmatch(r"[0-9A-F-]{36}", answer["requestid"])
    if code == "authFailed":
        assert answer["message"] == "鉴权失败"
    assert not await rig.connections()


async def handshake_status(rig: Rig, url: str) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await rig.http.ws_connect(url)
    return refused.value.status


async def test_a_ticket_opens_one_connection_within_90_seconds(rig: Rig) -> None:
    opened = await rig.open()
    url = f"{opened['endpoint']}?ticket={opened['ticket']}"
    await rig.socket(opened)
    assert await handshake_status(rig, url) == 401  # used
    assert await handshake_status(rig, url.split("?")[0] + "?ticket=nope") == 401
    assert await handshake_status(rig, url.split("?")[0]) == 401
    late = await rig.open()
    rig.clock.now += 90
    assert await handshake_status(rig, f"{late['endpoint']}?ticket={late['ticket']}") == 401
    other = await rig.open("other")  # another app's ticket on this app's endpoint
    assert await handshake_status(rig, f"{opened['endpoint']}?ticket={other['ticket']}") == 401
    fresh = await rig.open()
    rig.clock.now += 89
    await rig.socket(fresh)
    assert len(await rig.connections()) == 2
    assert [r["reason"].split()[1] for r in rig.records.rejections] == ["invalidTicket"] * 5


# -- SYSTEM frames -------------------------------------------------------------------------


async def test_ping_wants_its_data_back_under_its_message_id(rig: Rig) -> None:
    socket = await rig.connect()
    [connection] = await rig.connections()
    pinged = rig.call("POST", "/admin/dingtalk-app/stream/ping", json={"channel": "app"})
    task = asyncio.ensure_future(pinged)
    frame = await receive(socket)
    assert frame["specVersion"] == "1.0" and frame["type"] == "SYSTEM"
    headers = frame["headers"]
    assert headers["topic"] == "ping" and headers["contentType"] == "application/json"
    assert headers["connectionId"] == connection["id"] and re.fullmatch(UUID, headers["appId"])
    assert headers["time"] == str(int(rig.clock.now * 1000))
    assert re.fullmatch(r"[0-9a-f]{8}_\d+_[0-9a-f]+_[0-9a-f]{4}", headers["messageId"])
    assert set(json.loads(frame["data"])) == {"opaque"}
    answer = ack(frame) | {"data": json.dumps(json.loads(frame["data"]))}  # as the SDK does
    await socket.send_json(answer)
    [ping] = (await task)["pings"]
    assert ping == {"connection": connection["id"], "answered": True, "correct": True} | {
        "ack": answer,
        "error": None,
    }
    task = asyncio.ensure_future(
        rig.call("POST", "/admin/dingtalk-app/stream/ping", json={"channel": "app"})
    )
    frame = await receive(socket)
    await socket.send_json(ack(frame))  # the right id, but not the ping's data
    [wrong] = (await task)["pings"]
    assert wrong["answered"] is True and wrong["correct"] is False
    assert (await rig.connections())[0]["pings_answered"] == 1


async def test_disconnect_warns_then_closes_and_a_new_connection_takes_over(rig: Rig) -> None:
    old = await rig.connect()
    await rig.create(stream_card())
    answer = await rig.call(
        "POST", "/admin/dingtalk-app/stream/disconnect", json={"channel": "app"}
    )
    [connection] = await rig.connections()
    assert answer == {"disconnected": [connection["id"]], "grace_seconds": 0.01}
    assert connection["closing"] is True
    await rig.click(status=409)  # nothing is pushed to a closing connection
    frame = await receive(old)
    assert frame["type"] == "SYSTEM" and frame["headers"]["topic"] == "disconnect"
    assert json.loads(frame["data"]) == {"reason": "connection is expired"}
    closed = await old.receive(timeout=5)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    new = await rig.connect()
    clicked = rig.click()
    frame = await receive(new)
    await new.send_json(ack(frame))
    [delivery] = (await clicked)["deliveries"]
    assert delivery["acked"] is True and delivery["connection"] != connection["id"]


# -- card clicks ---------------------------------------------------------------------------


async def test_a_stream_card_needs_no_route_and_warns_without_a_connection(rig: Rig) -> None:
    await rig.create(stream_card("rf-early"))
    assert any("no stream connection" in w for w in (await rig.card("rf-early"))["warnings"])
    await rig.click(out_track_id="rf-early", status=409)  # no connection
    await rig.connect(subscriptions=BOT_SUB)
    await rig.click(out_track_id="rf-early", status=409)  # not subscribed to card callbacks
    await rig.connect()
    await rig.create(stream_card())
    card = await rig.card()
    assert card["callback_type"] == "STREAM" and card["callback_route_key"] is None
    assert not any("stream" in w.lower() for w in card["warnings"])
    await rig.click(tamper="signature", status=400)  # stream clicks are not signed


async def test_a_click_is_pushed_as_dingtalk_pushes_it_and_its_ack_applied(rig: Rig) -> None:
    socket = await rig.connect()
    [connection] = await rig.connections()
    await rig.create(stream_card())
    clicked = rig.click("false_alarm")
    frame = await receive(socket)
    assert frame["type"] == "CALLBACK" and frame["specVersion"] == "1.0"
    headers = frame["headers"]
    assert headers["topic"] == TOPIC and headers["connectionId"] == connection["id"]
    assert headers["contentType"] == "application/json"
    content = '{"cardPrivateData":{"actionIds":["false_alarm"],"params":{"incident":"inc-1"}}}'
    assert json.loads(frame["data"]) == {
        "type": "actionCallback",
        "outTrackId": "rf-inc-1-group",
        "corpId": CORP,
        "userId": "zhangsan",
        "content": content,
        "extension": "{}",
        "spaceType": "IM_GROUP",
        "spaceId": GROUP,
        "userIdType": 1,
        "value": content,
    }
    mine = {"userPrivateData": {"cardParamMap": {"state": "reasons"}}}
    answer = ack(frame, mine | {"cardUpdateOptions": {"updatePrivateDataByKey": True}})
    await socket.send_json(answer)
    reply = await clicked
    assert reply["message_id"] == headers["messageId"]
    [delivery] = reply["deliveries"]
    assert delivery["acked"] is True and delivery["ack"] == answer and delivery["applied"]
    assert delivery["repush"] is False and delivery["connection"] == connection["id"]
    card = await rig.card()
    assert card["private"] == {"zhangsan": {"state": "reasons"}} and card["public"] == public()
    assert card["updates"][-1]["source"] == "stream ack"
    assert card["clicks"][-1]["message_id"] == headers["messageId"]
    clicked = rig.click("claim", userid="lisi")
    frame = await receive(socket)
    closed = {"cardData": {"cardParamMap": {"state": "claimed", "status": "Lisi"}}}
    await socket.send_json(
        ack(frame, closed | {"cardUpdateOptions": {"updateCardDataByKey": True}})
    )
    assert (await clicked)["deliveries"][0]["applied"] is True
    assert (await rig.card())["public"] == public(state="claimed", status="Lisi")


async def test_an_unacked_push_comes_again_with_the_same_message_id(rig: Rig) -> None:
    socket = await rig.connect()
    await rig.create(stream_card())
    clicked = rig.click()
    first = await receive(socket)  # not acked: the deadline passes
    again = await receive(socket)
    assert again == first  # the same frame: same messageId, same data
    await socket.send_json(ack(again))
    deliveries = (await clicked)["deliveries"]
    assert [(d["acked"], d["repush"]) for d in deliveries] == [(False, False), (True, True)]
    never = rig.click("claim", userid="lisi", repushes=1)
    frames = [await receive(socket), await receive(socket)]
    assert frames[0]["headers"]["messageId"] == frames[1]["headers"]["messageId"]
    reply = await never
    assert [d["acked"] for d in reply["deliveries"]] == [False, False]
    assert all(d["ack"] is None and not d["applied"] for d in reply["deliveries"])


async def test_a_repush_goes_to_another_live_connection(rig: Rig) -> None:
    first, second = await rig.connect(), await rig.connect()
    ids = [c["id"] for c in await rig.connections()]
    await rig.create(robot(callbackType="STREAM", callbackRouteKey=None))
    clicked = rig.click(out_track_id="rf-inc-1-zhangsan", connection=ids[0])
    pushed = await receive(first)
    again = await receive(second)
    assert again["headers"]["messageId"] == pushed["headers"]["messageId"]
    assert again["headers"]["connectionId"] == ids[1] != pushed["headers"]["connectionId"]
    assert json.loads(again["data"])["spaceType"] == "IM_ROBOT"
    await second.send_json(ack(again))
    deliveries = (await clicked)["deliveries"]
    assert [(d["connection"], d["acked"]) for d in deliveries] == [(ids[0], False), (ids[1], True)]


async def test_deliveries_push_one_message_id_several_times(rig: Rig) -> None:
    socket = await rig.connect()
    await rig.create(stream_card())
    clicked = rig.click(deliveries=3, tamper="corp")
    frames = []
    for _ in range(3):
        frames.append(await receive(socket))
        await socket.send_json(ack(frames[-1]))
    reply = await clicked
    assert {f["headers"]["messageId"] for f in frames} == {reply["message_id"]}
    assert [d["acked"] for d in reply["deliveries"]] == [True] * 3
    assert json.loads(frames[0]["data"])["corpId"] != CORP


async def test_a_connection_closing_mid_push_is_reported(rig: Rig) -> None:
    socket = await rig.connect()
    await rig.create(stream_card())
    clicked = rig.click(repushes=0)
    await receive(socket)
    await socket.close()
    [delivery] = (await clicked)["deliveries"]
    assert delivery["acked"] is False and delivery["applied"] is False


async def test_reset_drops_connections_and_tickets(rig: Rig) -> None:
    socket = await rig.connect()
    unused = await rig.open()
    await rig.call("POST", "/admin/reset")
    assert await rig.connections() == []
    closed = await socket.receive(timeout=5)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert await handshake_status(rig, f"{unused['endpoint']}?ticket={unused['ticket']}") == 401
