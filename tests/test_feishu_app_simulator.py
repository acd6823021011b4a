"""The local receiver's Feishu app simulator (devstack.receivers.feishu_app) over real HTTP: the
receiver app on a loopback port, driven with aiohttp as the product would drive Feishu, and a
small callback server of the test's own that checks each press's signature
(workers.callbacks.feishu_crypto.signature) and decrypts it (FeishuCrypto). The receiver's
clock is scripted (token, uuid and 14-day windows), so nothing here waits but the click
deadline, set small."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devstack.localstack.process import free_port
from devstack.receivers import feishu_app
from devstack.receivers.limits import RateLimit
from devstack.receivers.records import Records
from devstack.receivers.server import build_app
from riskflow.config.channels import ChannelSecrets, NotificationSettings
from workers.callbacks.feishu_crypto import FeishuCrypto, signature
from workers.callbacks.rejection import CallbackRejected

APP_ID, SECRET = "cli_a5fb0ae6a4000001", "app-secret"
TOKEN, KEY = "v-token-1", "encrypt-key-1"
CHAT = "oc_5ad11d72b830411d72b836c20"
START = 1_700_000_000.0
CREDENTIALS = {"app": (APP_ID, SECRET), "other": ("cli_a5fb0ae6a4000002", "other-secret")}
DEADLINE = 0.5  # the simulator's click deadline here (Feishu's: 3 s)
BASE = "/feishu-app/app/open-apis"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def settings() -> NotificationSettings:
    app: dict[str, Any] = {
        "type": "feishu_app",
        "app_id": APP_ID,
        "secret": SECRET,
        "receive_id_type": "chat_id",
        "receive_ids": [CHAT, "ou_7d8a6e6df7621556ce0d21922b676706"],
        "callback_token": TOKEN,
        "callback_encrypt_key": KEY,
    }
    app_id, secret = CREDENTIALS["other"]
    other = app | {"app_id": app_id, "secret": secret}
    return NotificationSettings.model_validate({"channels": {"app": app, "other": other}})


def button(element_id: str, action: str, **changes: Any) -> dict[str, Any]:
    found = {
        "tag": "button",
        "element_id": element_id,
        "text": {"tag": "plain_text", "content": action.title()},
        "type": "primary",
        "behaviors": [{"type": "callback", "value": {"action": action, "incident": "inc-1"}}],
    }
    return found | changes


def select() -> dict[str, Any]:
    return {
        "tag": "select_static",
        "element_id": "eta",
        "placeholder": {"tag": "plain_text", "content": "Arriving in"},
        "options": [
            {"text": {"tag": "plain_text", "content": "5 min"}, "value": "5"},
            {"text": {"tag": "plain_text", "content": "10 min"}, "value": "10"},
        ],
        "behaviors": [{"type": "callback", "value": {"action": "on_my_way", "incident": "inc-1"}}],
    }


def card(*elements: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """riskflow's incident card in JSON 2.0: header, text, two buttons in columns, a select."""
    columns = [
        {"tag": "column", "elements": [button("claim", "claim")]},
        {"tag": "column", "elements": [button("dismiss", "false_alarm", type="danger")]},
    ]
    link = {"type": "open_url", "default_url": "https://console.example.com/incidents/inc-1"}
    found: dict[str, Any] = {
        "schema": "2.0",
        "config": {"update_multi": True},
        "header": {
            "title": {"tag": "plain_text", "content": "Fall at Plant A"},
            "subtitle": {"tag": "plain_text", "content": "critical"},
            "template": "red",
        },
        "body": {
            "elements": list(elements)
            or [
                {"tag": "markdown", "content": "**Camera** cam1"},
                {"tag": "column_set", "columns": columns},
                select(),
                {"tag": "button", "text": {"tag": "plain_text", "content": "Open"}}
                | {"behaviors": [link]},
            ]
        },
    }
    return found | changes


def message(content: Any = None, **changes: Any) -> dict[str, Any]:
    body = {
        "receive_id": CHAT,
        "msg_type": "interactive",
        "content": json.dumps(content if content is not None else card()),
    }
    return body | changes


@dataclass
class Callbacks:
    """The product's callback URL, as this test plays it: checks, decrypts, keeps, answers."""

    crypto: FeishuCrypto = field(default_factory=lambda: FeishuCrypto(KEY, TOKEN))
    events: list[dict[str, Any]] = field(default_factory=list)
    reply: Any = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def post(self, request: web.Request) -> web.Response:
        raw, h = await request.read(), request.headers
        ts, nonce = h["X-Lark-Request-Timestamp"], h["X-Lark-Request-Nonce"]
        found: dict[str, Any] = {"headers": dict(h), "raw": raw}
        found["signed"] = signature(ts, nonce, KEY, raw) == h["X-Lark-Signature"]
        try:
            found["callback"] = self.crypto.open(ts, nonce, h["X-Lark-Signature"], raw)
        except CallbackRejected as exc:
            found["rejected"] = exc.reason
            found["plain"] = json.loads(self.crypto.decrypt(json.loads(raw)["encrypt"]))
        self.events.append(found)
        return web.json_response(self.reply)

    async def echo(self, request: web.Request) -> web.Response:
        h = request.headers
        ts, nonce = h["X-Lark-Request-Timestamp"], h["X-Lark-Request-Nonce"]
        check = self.crypto.open(ts, nonce, h["X-Lark-Signature"], await request.read())
        return web.json_response({"challenge": check["challenge"]})

    async def wrong(self, request: web.Request) -> web.Response:
        return web.json_response({"challenge": "nope"})

    async def never(self, request: web.Request) -> web.Response:
        await self.release.wait()  # answers only when the test ends
        return web.Response()

    async def failing(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def not_json(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/cb")


@dataclass
class Rig:
    base: str
    http: aiohttp.ClientSession
    records: Records
    clock: Clock
    callbacks: Callbacks
    callback_base: str

    async def call(
        self, method: str, path: str, status: int = 200, **kwargs: Any
    ) -> dict[str, Any]:
        async with self.http.request(method, self.base + path, **kwargs) as response:
            assert response.status == status, await response.text()
            found: dict[str, Any] = await response.json()
            return found

    async def admin(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        async with self.http.post(self.base + path, json=body) as response:
            assert response.status == status, await response.text()
            return await response.json()

    async def token(self, channel: str = "app", status: int = 200, **body: Any) -> Any:
        app_id, secret = CREDENTIALS[channel]
        body = {"app_id": app_id, "app_secret": secret} | body
        path = f"/feishu-app/{channel}/open-apis/auth/v3/tenant_access_token/internal"
        return await self.call("POST", path, status, data=json.dumps(body))  # no Content-Type

    async def bearer(self, channel: str = "app") -> dict[str, str]:
        return {"Authorization": "Bearer " + (await self.token(channel))["tenant_access_token"]}

    async def send(
        self,
        body: dict[str, Any],
        status: int = 200,
        headers: dict[str, str] | None = None,
        kind: str | None = "chat_id",
    ) -> Any:
        headers = headers if headers is not None else await self.bearer()
        params = {"receive_id_type": kind} if kind else {}
        return await self.call(
            "POST", f"{BASE}/im/v1/messages", status, json=body, params=params, headers=headers
        )

    async def patch(
        self, message_id: str, content: Any, status: int = 200, channel: str = "app"
    ) -> Any:
        path = f"/feishu-app/{channel}/open-apis/im/v1/messages/{message_id}"
        body = {"content": json.dumps(content)}
        return await self.call("PATCH", path, status, json=body, headers=await self.bearer(channel))

    async def cards(self) -> list[dict[str, Any]]:
        async with self.http.get(self.base + "/admin/feishu-app/cards?channel=app") as response:
            found: list[dict[str, Any]] = await response.json()
            return found

    async def click(self, message_id: str, element_id: str = "claim", **extra: Any) -> Any:
        body = {"channel": "app", "message_id": message_id, "element_id": element_id}
        body |= {"user": {"open_id": "ou_zhang", "user_id": "zhang"}}
        body["callback_url"] = self.callback_base + "/cb"
        status = extra.pop("status", 200)
        return await self.admin("/admin/feishu-app/click", body | extra, status)


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
    app[feishu_app.SIMULATOR] = feishu_app.FeishuAppSimulator(
        config, secrets, records, callback_deadline=DEADLINE, url_check_deadline=DEADLINE
    )
    callbacks = Callbacks()
    product = web.Application()
    for path, handler in [
        ("/cb", callbacks.post),
        ("/echo", callbacks.echo),
        ("/wrong", callbacks.wrong),
        ("/never", callbacks.never),
        ("/failing", callbacks.failing),
        ("/not-json", callbacks.not_json),
        ("/moved", callbacks.moved),
    ]:
        product.router.add_post(path, handler)
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


async def sent_id(rig: Rig, body: dict[str, Any] | None = None) -> str:
    answer = await rig.send(body or message())
    assert answer["code"] == 0, answer
    return str(answer["data"]["message_id"])


# -- tenant_access_token -------------------------------------------------------------------


async def test_the_token_is_kept_while_30_minutes_are_left(rig: Rig) -> None:
    first = await rig.token()
    assert first["code"] == 0 and first["msg"] == "ok" and first["expire"] == 7200
    assert first["tenant_access_token"].startswith("t-")
    rig.clock.now += 5400  # 1800 s left: still the same token
    again = await rig.token()
    assert again["tenant_access_token"] == first["tenant_access_token"]
    assert again["expire"] == 1800
    rig.clock.now += 1  # under 30 min left: a new one, and the old one still works
    new = await rig.token()
    assert new["tenant_access_token"] != first["tenant_access_token"] and new["expire"] == 7200
    old = {"Authorization": "Bearer " + first["tenant_access_token"]}
    assert (await rig.send(message(), headers=old))["code"] == 0
    rig.clock.now += 1799  # the old one's 2 hours are over
    assert (await rig.send(message(), 400, headers=old))["code"] == 99991663


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"app_secret": "wrong"}, 10014),
        ({"app_id": "cli_someone_else"}, 10003),
        ({"app_secret": ""}, 10003),
        ({"app_id": None}, 10003),
    ],
)
async def test_token_refusals(rig: Rig, body: dict[str, Any], code: int) -> None:
    answer = await rig.token("app", 400, **body)
    assert answer["code"] == code and "tenant_access_token" not in answer
    assert [r["reason"].split()[0] for r in rig.records.rejections] == [str(code)]


async def test_missing_unknown_expired_and_foreign_tokens(rig: Rig) -> None:
    assert (await rig.send(message(), 400, headers={}))["code"] == 99991661
    assert (await rig.send(message(), 400, headers={"Authorization": "t-x"}))["code"] == 99991661
    unknown = {"Authorization": "Bearer t-unknown"}
    assert (await rig.send(message(), 400, headers=unknown))["code"] == 99991663
    foreign = await rig.bearer("other")
    assert (await rig.send(message(), 400, headers=foreign))["code"] == 99991663
    mine = await rig.bearer()
    assert await rig.call("POST", "/admin/feishu-app/expire-tokens") == {"ok": True, "expired": 2}
    assert (await rig.send(message(), 400, headers=mine))["code"] == 99991663
    assert (await rig.send(message()))["code"] == 0  # a fresh token works
    assert not [c for c in await rig.cards() if c["channel"] != "app"]


# -- send ----------------------------------------------------------------------------------


async def test_a_valid_card_is_sent_and_listed(rig: Rig) -> None:
    answer = await rig.send(message())
    assert (answer["code"], answer["msg"]) == (0, "success")
    data = answer["data"]
    assert data["message_id"].startswith("om_") and data["chat_id"] == CHAT
    assert data["msg_type"] == "interactive" and data["create_time"] == str(int(START * 1000))
    assert data["sender"]["id"] == APP_ID and data["sender"]["sender_type"] == "app"
    notes = rig.http.get(rig.base + "/admin/notifications", params={"channel": "app"})
    async with notes as response:
        [note] = await response.json()
    assert note["vendor"] == "feishu_app" and note["title"] == "Fall at Plant A"
    assert note["message_id"] == data["message_id"] and note["card"] == card()
    [sent] = await rig.cards()
    assert sent["card"] == card() and sent["receive_id_type"] == "chat_id"
    assert sent["pressable"] == ["claim", "dismiss", "eta"] and sent["warnings"] == []


async def test_a_person_gets_the_card_in_a_p2p_chat(rig: Rig) -> None:
    body = message(receive_id="ou_7d8a6e6df7621556ce0d21922b676706")
    data = (await rig.send(body, kind="open_id"))["data"]
    assert data["chat_id"].startswith("oc_") and data["chat_id"] != CHAT


async def test_warnings_are_not_refusals(rig: Rig) -> None:
    loose = button("x", "claim")
    del loose["element_id"]
    body = card(loose, header={"title": {"tag": "plain_text", "content": "T"}, "template": "pink"})
    await sent_id(rig, message(body))
    [sent] = await rig.cards()
    assert [w.split(" ")[0] for w in sent["warnings"]] == ["header.template", "ROOT"]
    assert sent["pressable"] == []


def _many(n: int) -> dict[str, Any]:
    return card(*[{"tag": "markdown", "content": str(i)} for i in range(n)])


def _without(key: str) -> dict[str, Any]:
    found = message()
    del found[key]
    return found


def _v1() -> dict[str, Any]:
    return {"header": {"title": {"tag": "plain_text", "content": "T"}}, "elements": []}


def _select(**changes: Any) -> dict[str, Any]:
    return card(select() | changes)


STRING_VALUE = button("claim", "claim", behaviors=[{"type": "callback", "value": "claim"}])
REPEATED = [{"text": {"tag": "plain_text", "content": "a"}, "value": "1"}] * 2
INVALID: dict[str, tuple[dict[str, Any], str | None, int, int | None]] = {
    "content an object": (message() | {"content": card()}, "chat_id", 99992402, None),
    "no receive_id_type": (message(), None, 99992402, None),
    "bad receive_id_type": (message(), "phone", 99992402, None),
    "no receive_id": (_without("receive_id"), "chat_id", 99992402, None),
    "uuid too long": (message(uuid="u" * 51), "chat_id", 99992402, None),
    "text message": (message(msg_type="text"), "chat_id", 230001, None),
    "bot not in chat": (message(receive_id="oc_elsewhere"), "chat_id", 230002, None),
    "user out of range": (message(receive_id="ou_stranger"), "open_id", 230013, None),
    "over 30 KB": (
        message(card({"tag": "markdown", "content": "x" * 31_000})),
        "chat_id",
        230025,
        None,
    ),
    "not JSON": (message() | {"content": "{not json"}, "chat_id", 230099, 200621),
    "a 1.0 card": (message(_v1()), "chat_id", 230099, 200621),
    "unknown root field": (message(card(elements=[])), "chat_id", 230099, 200621),
    "update_multi false": (
        message(card(config={"update_multi": False})),
        "chat_id",
        230099,
        200621,
    ),
    "action module": (message(card({"tag": "action", "actions": []})), "chat_id", 230099, 200861),
    "unknown tag": (message(card({"tag": "blink"})), "chat_id", 230099, 200621),
    "201 elements": (message(_many(201)), "chat_id", 230099, 11310),
    "element_id from a digit": (message(card(button("1claim", "c"))), "chat_id", 230099, 200621),
    "element_id of 21": (message(card(button("c" * 21, "c"))), "chat_id", 230099, 200621),
    "element_id twice": (
        message(card(button("c", "c"), button("c", "d"))),
        "chat_id",
        230099,
        200621,
    ),
    "a string value": (message(card(STRING_VALUE)), "chat_id", 230099, 200621),
    "no such button type": (message(card(button("c", "c", type="big"))), "chat_id", 230099, 200621),
    "1.0 button value": (
        message(card(button("c", "c", value={"a": 1}))),
        "chat_id",
        230099,
        200621,
    ),
    "select without options": (message(_select(options=[])), "chat_id", 230099, 200621),
    "options repeat": (message(_select(options=REPEATED)), "chat_id", 230099, 200621),
    "column without tag": (
        message(card({"tag": "column_set", "columns": [{"elements": []}]})),
        "chat_id",
        230099,
        200621,
    ),
}


@pytest.mark.parametrize("case", INVALID)
async def test_each_invalid_request_is_refused_with_its_code(rig: Rig, case: str) -> None:
    body, kind, code, sub = INVALID[case]
    answer = await rig.send(body, 400, kind=kind)
    assert answer["code"] == code, answer
    assert answer["error"]["log_id"] and "data" not in answer
    if sub is not None:
        assert answer["msg"].startswith(f"Failed to create card content, ext=ErrCode: {sub};")
    if code == 99992402:
        assert answer["msg"] == "field validation failed" and answer["error"]["field_violations"]
    assert not await rig.cards() and not rig.records.notifications
    [refused] = rig.records.rejections
    assert refused["channel"] == "app" and refused["reason"].startswith(f"{code} ")


async def test_200_elements_are_allowed(rig: Rig) -> None:
    await sent_id(rig, message(_many(200)))


async def test_a_uuid_sends_once_an_hour(rig: Rig) -> None:
    first = await rig.send(message(uuid="rf-inc-1-app"))
    rig.clock.now += 3599
    again = await rig.send(message(uuid="rf-inc-1-app"))
    assert again == first and len(await rig.cards()) == 1 and rig.records.duplicates == 1
    rig.clock.now += 1
    later = await rig.send(message(uuid="rf-inc-1-app"))
    assert later["data"]["message_id"] != first["data"]["message_id"]
    other = await rig.send(message(uuid="rf-inc-2-app"))
    assert len({m["message_id"] for m in await rig.cards()}) == 3 and other["code"] == 0


async def test_scripted_faults_and_the_rate_limit(rig: Rig) -> None:
    busy = {"code": 99991400, "msg": "request trigger frequency limit"}
    fault = {"channel": "app", "times": 1, "status": 429, "body": busy}
    await rig.admin("/admin/faults", {"faults": [fault]})
    assert await rig.send(message(), 429) == busy and not await rig.cards()
    assert (await rig.send(message()))["code"] == 0
    rig.records.limits.append(RateLimit("app", count=1, window_seconds=60))
    assert (await rig.send(message()))["code"] == 0
    assert (await rig.send(message(), 400))["code"] == 230020


# -- PATCH ---------------------------------------------------------------------------------


def claimed() -> dict[str, Any]:
    return card(
        {"tag": "markdown", "content": "Claimed: Zhang 14:03"},
        button("resolve", "resolve"),
        button("dismiss", "false_alarm", disabled=True),
    )


async def test_patch_replaces_the_card_for_everyone(rig: Rig) -> None:
    message_id = await sent_id(rig)
    assert await rig.patch(message_id, claimed()) == {"code": 0, "msg": "ok", "data": {}}
    [sent] = await rig.cards()
    assert sent["card"] == claimed() and sent["pressable"] == ["resolve"]
    assert [u["source"] for u in sent["updates"]] == ["patch"]
    await rig.click(message_id, "claim", status=409)  # gone from the card
    await rig.click(message_id, "dismiss", status=409)  # disabled


async def test_patch_refusals(rig: Rig) -> None:
    message_id = await sent_id(rig)
    assert (await rig.patch("om_unknown", claimed(), 400))["code"] == 230001
    assert (await rig.patch(message_id, claimed(), 400, channel="other"))["code"] == 230027
    unshared = claimed() | {"config": {}}
    assert (await rig.patch(message_id, unshared, 400))["code"] == 230001
    assert (await rig.patch(message_id, card({"tag": "note"}), 400))["code"] == 230099
    rig.clock.now += 14 * 24 * 3600
    assert (await rig.patch(message_id, claimed(), 400))["code"] == 230031
    [sent] = await rig.cards()
    assert sent["card"] == card() and sent["updates"] == []


async def test_a_card_sent_without_update_multi_cannot_be_patched(rig: Rig) -> None:
    message_id = await sent_id(rig, message(card(config={})))
    answer = await rig.patch(message_id, claimed(), 400)
    assert answer["code"] == 230001 and "update_multi" in answer["msg"]


async def test_five_patches_a_second_per_message(rig: Rig) -> None:
    message_id = await sent_id(rig)
    for _ in range(5):
        assert (await rig.patch(message_id, claimed()))["code"] == 0
    assert (await rig.patch(message_id, claimed(), 400))["code"] == 230020
    rig.clock.now += 1
    assert (await rig.patch(message_id, claimed()))["code"] == 0


# -- clicks --------------------------------------------------------------------------------


async def test_a_press_arrives_encrypted_and_signed_as_feishu_sends_it(rig: Rig) -> None:
    message_id = await sent_id(rig)
    answer = await rig.click(message_id)
    [delivery] = answer["deliveries"]
    assert delivery["status"] == 200 and delivery["error_code"] is None
    assert delivery["timed_out"] is False and delivery["card_applied"] is False
    [event] = rig.callbacks.events
    headers, raw = event["headers"], event["raw"]
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Lark-Request-Timestamp"] == str(int(START)) and event["signed"] is True
    assert list(json.loads(raw)) == ["encrypt"]
    assert answer["token"].startswith("c-") and answer["create_time"] == str(int(START * 1e6))
    assert event["callback"] == {
        "schema": "2.0",
        "header": {
            "event_id": answer["event_id"],
            "token": TOKEN,
            "create_time": answer["create_time"],
            "event_type": "card.action.trigger",
            "tenant_key": event["callback"]["header"]["tenant_key"],
            "app_id": APP_ID,
        },
        "event": {
            "operator": {
                "tenant_key": event["callback"]["header"]["tenant_key"],
                "user_id": "zhang",
                "open_id": "ou_zhang",
                "union_id": event["callback"]["event"]["operator"]["union_id"],
            },
            "token": answer["token"],
            "action": {"value": {"action": "claim", "incident": "inc-1"}, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": message_id, "open_chat_id": CHAT},
        },
    }
    assert event["callback"]["event"]["operator"]["union_id"].startswith("on_")
    [sent] = await rig.cards()
    assert sent["clicks"][0]["element_id"] == "claim" and sent["clicks"][0]["option"] is None


async def test_a_select_sends_the_picked_option(rig: Rig) -> None:
    message_id = await sent_id(rig)
    await rig.click(message_id, "eta", option="10", user={"open_id": "ou_li"})
    [event] = rig.callbacks.events
    action, operator = event["callback"]["event"]["action"], event["callback"]["event"]["operator"]
    assert action == {
        "value": {"action": "on_my_way", "incident": "inc-1"},
        "tag": "select_static",
        "option": "10",
    }
    assert "user_id" not in operator  # only with the user ID permission
    await rig.click(message_id, "eta", option="99", status=400)
    await rig.click(message_id, "eta", status=400)
    await rig.click(message_id, "claim", option="5", status=400)
    assert len(rig.callbacks.events) == 1


async def test_an_answer_with_a_card_and_a_toast_is_applied(rig: Rig) -> None:
    message_id = await sent_id(rig)
    toast = {"type": "success", "content": "Claimed"}
    rig.callbacks.reply = {"toast": toast, "card": {"type": "raw", "data": claimed()}}
    [delivery] = (await rig.click(message_id))["deliveries"]
    assert delivery["card_applied"] is True and delivery["toast"] == toast
    [sent] = await rig.cards()
    assert sent["card"] == claimed() and [u["source"] for u in sent["updates"]] == ["callback"]
    assert sent["toasts"][0]["toast"] == toast


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ({"card": {"type": "raw", "data": _v1()}}, 200830),
        ({"card": {"type": "raw", "data": card({"tag": "note"})}}, 200673),
        ({"card": {"type": "template", "data": {"template_id": "AAq"}}}, 200673),
        ({"toast": "Claimed"}, 200672),
        (["not", "an", "object"], 200672),
    ],
)
async def test_unacceptable_answers_show_the_client_error(rig: Rig, reply: Any, code: int) -> None:
    message_id = await sent_id(rig)
    rig.callbacks.reply = reply
    [delivery] = (await rig.click(message_id))["deliveries"]
    assert delivery["status"] == 200 and delivery["error_code"] == code
    assert delivery["card_applied"] is False
    [sent] = await rig.cards()
    assert sent["card"] == card() and sent["toasts"] == []


@pytest.mark.parametrize(
    ("path", "code"), [("/failing", 200671), ("/not-json", 200672), ("/moved", 200671)]
)
async def test_bad_http_answers(rig: Rig, path: str, code: int) -> None:
    message_id = await sent_id(rig)
    [delivery] = (await rig.click(message_id, callback_url=rig.callback_base + path))["deliveries"]
    assert delivery["error_code"] == code and delivery["timed_out"] is False


async def test_no_answer_in_time_and_no_connection(rig: Rig) -> None:
    message_id = await sent_id(rig)
    slow = await rig.click(message_id, callback_url=rig.callback_base + "/never")
    [delivery] = slow["deliveries"]
    assert delivery["timed_out"] is True and delivery["status"] is None
    assert delivery["error_code"] == 200341
    closed = await rig.click(message_id, callback_url=f"http://127.0.0.1:{free_port()}/cb")
    assert closed["deliveries"][0]["error_code"] == 200342


async def test_repeated_deliveries_are_the_same_callback_sealed_afresh(rig: Rig) -> None:
    message_id = await sent_id(rig)
    answer = await rig.click(message_id, deliveries=2)
    assert [d["error_code"] for d in answer["deliveries"]] == [None, None]
    first, second = rig.callbacks.events
    assert first["callback"] == second["callback"]  # same event_id, token, create_time
    assert first["raw"] != second["raw"]
    nonce = "X-Lark-Request-Nonce"
    assert first["headers"][nonce] != second["headers"][nonce]


@pytest.mark.parametrize(
    ("tamper", "reason"), [("signature", "bad_signature"), ("token", "bad_token")]
)
async def test_tampered_presses_are_refused(rig: Rig, tamper: str, reason: str) -> None:
    message_id = await sent_id(rig)
    await rig.click(message_id, tamper=tamper)
    [event] = rig.callbacks.events
    assert event["rejected"] == reason and "callback" not in event
    assert event["signed"] is (tamper != "signature")


async def test_a_stale_or_foreign_press_is_signed_but_wrong(rig: Rig) -> None:
    message_id = await sent_id(rig)
    await rig.click(message_id, tamper="stale_timestamp")
    await rig.click(message_id, tamper="app_id")
    stale, foreign = rig.callbacks.events
    assert int(stale["headers"]["X-Lark-Request-Timestamp"]) == int(START) - 3600
    assert stale["signed"] and stale["callback"]["header"]["app_id"] == APP_ID
    assert foreign["signed"] and foreign["callback"]["header"]["app_id"] != APP_ID


async def test_click_refusals(rig: Rig) -> None:
    message_id = await sent_id(rig)
    await rig.click("om_unknown", status=404)
    await rig.click(message_id, "nope", status=409)
    await rig.click(message_id, deliveries=6, status=400)
    await rig.click(message_id, tamper="nope", status=400)
    await rig.click(message_id, user={"user_id": "zhang"}, status=400)
    await rig.click(message_id, callback_url="ftp://x", status=400)
    rig.clock.now += 14 * 24 * 3600  # no longer interactive
    await rig.click(message_id, status=409)
    assert not rig.callbacks.events


# -- URL check, reset ----------------------------------------------------------------------


async def test_verify_url(rig: Rig) -> None:
    body = {"channel": "app", "callback_url": rig.callback_base + "/echo"}
    found = await rig.admin("/admin/feishu-app/verify-url", body)
    assert found["ok"] is True and found["status"] == 200
    wrong = await rig.admin(
        "/admin/feishu-app/verify-url", body | {"callback_url": rig.callback_base + "/wrong"}
    )
    assert wrong["ok"] is False and wrong["status"] == 200
    never = {"callback_url": rig.callback_base + "/never"}
    slow = await rig.admin("/admin/feishu-app/verify-url", body | never)
    assert slow["ok"] is False and slow["timed_out"] is True


async def test_an_unknown_app_path_is_not_found(rig: Rig) -> None:
    path = "/feishu-app/nope/open-apis/auth/v3/tenant_access_token/internal"
    async with rig.http.post(rig.base + path, json={}) as response:
        assert response.status == 404


async def test_reset_forgets_tokens_and_cards(rig: Rig) -> None:
    headers = await rig.bearer()
    first = await rig.send(message(uuid="u-1"), headers=headers)
    await rig.call("POST", "/admin/reset")
    assert await rig.cards() == [] and not rig.records.notifications
    assert (await rig.send(message(), 400, headers=headers))["code"] == 99991663
    again = await rig.send(message(uuid="u-1"))
    assert again["data"]["message_id"] != first["data"]["message_id"]
