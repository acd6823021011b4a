"""The local receiver's WeCom app simulator (devstack.receivers.wecom_app) over real HTTP: the
receiver app on a loopback port, driven with aiohttp as the product would drive WeCom, and a
small callback server of the test's own that decrypts what the simulator's clicks deliver
with workers.callbacks.wecom_crypto. The receiver's clock is scripted (token and code
lifetimes, duplicate-check windows), so nothing here waits but the click deadline, set small."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devstack.localstack.process import free_port
from devstack.receivers import wecom_app
from devstack.receivers.limits import RateLimit
from devstack.receivers.records import Records
from devstack.receivers.server import build_app
from riskflow.config.channels import ChannelSecrets, NotificationSettings
from workers.callbacks.rejection import CallbackRejected
from workers.callbacks.wecom_crypto import WeComCrypto

CORP, AGENT, SECRET = "ww-corp-1", 1000002, "app-secret"
TOKEN, AES_KEY = "cb-token", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
START = 1_700_000_000.0
CREDENTIALS = {"app": (CORP, SECRET), "other": ("ww-corp-2", "other-secret")}
DEADLINE = 0.5  # the simulator's click deadline here (WeCom's: 5 s)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def settings() -> NotificationSettings:
    app: dict[str, Any] = {
        "type": "wecom_app",
        "corp_id": CORP,
        "agent_id": AGENT,
        "secret": SECRET,
        "to_users": ["zhangsan", "lisi"],
        "callback_token": TOKEN,
        "callback_aes_key": AES_KEY,
    }
    corp, secret = CREDENTIALS["other"]
    other = app | {"corp_id": corp, "agent_id": 7, "secret": secret}
    return NotificationSettings.model_validate({"channels": {"app": app, "other": other}})


def card(task_id: str = "rf-task-1", **changes: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "card_type": "button_interaction",
        "source": {"desc": "riskflow"},
        "main_title": {"title": "Fall at Plant A", "desc": "critical"},
        "task_id": task_id,
        "horizontal_content_list": [{"keyname": "Cam", "value": "cam1"}],
        "button_selection": {
            "question_key": "eta",
            "title": "Arriving in",
            "option_list": [{"id": "5", "text": "5 min"}, {"id": "10", "text": "10 min"}],
            "selected_id": "5",
        },
        "button_list": [
            {"text": "Claim", "style": 1, "key": "claim:inc-1"},
            {"text": "Dismiss", "style": 2, "key": "dismiss:inc-1"},
        ],
        "card_action": {"type": 1, "url": "https://console.example.com/incidents/inc-1"},
    }
    return found | changes


def message(template_card: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    body = {
        "touser": "zhangsan|lisi",
        "msgtype": "template_card",
        "agentid": AGENT,
        "template_card": template_card or card(),
    }
    return body | changes


@dataclass
class Callbacks:
    """The product's receive URL, as this test plays it: decrypts and keeps each delivery."""

    crypto: WeComCrypto = field(default_factory=lambda: WeComCrypto(TOKEN, AES_KEY, CORP))
    events: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def post(self, request: web.Request) -> web.Response:
        q = request.query
        envelope = ET.fromstring(await request.read())
        found: dict[str, Any] = {"query": dict(q), "envelope": {e.tag: e.text for e in envelope}}
        try:
            plain = self.crypto.decrypt(
                q["msg_signature"], q["timestamp"], q["nonce"], found["envelope"]["Encrypt"]
            )
            found["xml"] = plain.decode()
        except CallbackRejected as exc:
            found["rejected"] = exc.reason
        self.events.append(found)
        return web.Response(text="" if "xml" in found else "refused", status=200)

    async def echo(self, request: web.Request) -> web.Response:
        q = request.query
        plain = self.crypto.decrypt(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
        return web.Response(body=plain)

    async def wrong(self, request: web.Request) -> web.Response:
        return web.Response(text="nope")

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

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.http.request(method, self.base + path, **kwargs) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def admin(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        async with self.http.post(self.base + path, json=body) as response:
            assert response.status == status, await response.text()
            return await response.json()

    async def token(self, channel: str = "app") -> Any:
        corp, secret = CREDENTIALS[channel]
        params = {"corpid": corp, "corpsecret": secret}
        return await self.call("GET", f"/wecom-app/{channel}/cgi-bin/gettoken", params=params)

    async def send(self, body: dict[str, Any], token: str | None = None) -> Any:
        token = token if token is not None else (await self.token())["access_token"]
        path = "/wecom-app/app/cgi-bin/message/send"
        return await self.call("POST", path, params={"access_token": token}, json=body)

    async def update(self, body: dict[str, Any], channel: str = "app") -> Any:
        token = (await self.token(channel))["access_token"]
        path = f"/wecom-app/{channel}/cgi-bin/message/update_template_card"
        return await self.call("POST", path, params={"access_token": token}, json=body)

    async def cards(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call("GET", "/admin/wecom-app/cards?channel=app")
        return found

    async def click(self, key: str = "claim:inc-1", **extra: Any) -> Any:
        body = {"channel": "app", "task_id": "rf-task-1", "userid": "zhangsan", "event_key": key}
        body["callback_url"] = self.callback_base + "/cb"
        return await self.admin("/admin/wecom-app/click", body | extra)


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
    app[wecom_app.SIMULATOR] = wecom_app.WeComAppSimulator(
        config, secrets, records, callback_deadline=DEADLINE, url_check_deadline=DEADLINE
    )
    callbacks = Callbacks()
    product = web.Application()
    product.router.add_post("/cb", callbacks.post)
    product.router.add_get("/cb", callbacks.echo)
    product.router.add_route("*", "/never", callbacks.never)
    product.router.add_get("/wrong", callbacks.wrong)
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


def fields(xml: str) -> dict[str, str | None]:
    return {e.tag: e.text for e in ET.fromstring(xml) if e.tag != "SelectedItems"}


# -- gettoken ------------------------------------------------------------------------------


async def test_gettoken_issues_one_token_while_it_lasts(rig: Rig) -> None:
    first = await rig.token()
    assert first["errcode"] == 0 and first["errmsg"] == "ok" and first["expires_in"] == 7200
    assert re.fullmatch(r"[A-Za-z0-9_-]{16,512}", first["access_token"])
    rig.clock.now += 100
    again = await rig.token()
    assert again["access_token"] == first["access_token"] and again["expires_in"] == 7100
    rig.clock.now += 7100  # lifetime over: the token is refused and a new one issued
    assert (await rig.send(message(), token=first["access_token"]))["errcode"] == 42001
    assert (await rig.token())["access_token"] != first["access_token"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"corpid": CORP, "corpsecret": "wrong"}, 40001),
        ({"corpid": "ww-else", "corpsecret": SECRET}, 40013),
        ({"corpsecret": SECRET}, 41002),
        ({"corpid": CORP}, 41004),
    ],
)
async def test_gettoken_refusals(rig: Rig, params: dict[str, str], code: int) -> None:
    answer = await rig.call("GET", "/wecom-app/app/cgi-bin/gettoken", params=params)
    assert answer["errcode"] == code and "access_token" not in answer
    assert f"e={code}" in answer["errmsg"]
    assert [r["reason"].split()[0] for r in rig.records.rejections] == [str(code)]


async def test_expired_tokens_answer_42001_until_a_new_one_is_fetched(rig: Rig) -> None:
    old = (await rig.token())["access_token"]
    expired = await rig.call("POST", "/admin/wecom-app/expire-tokens")
    assert expired == {"ok": True, "expired": 1}
    assert (await rig.send(message(), token=old))["errcode"] == 42001
    new = (await rig.token())["access_token"]
    assert new != old and (await rig.send(message(), token=new))["errcode"] == 0


async def test_missing_and_unknown_tokens(rig: Rig) -> None:
    assert (await rig.send(message(), token=""))["errcode"] == 41001
    assert (await rig.send(message(), token="not-a-token"))["errcode"] == 40014
    other = (await rig.token("other"))["access_token"]
    assert (await rig.send(message(), token=other))["errcode"] == 40014  # another app's
    assert not rig.records.notifications


# -- message/send --------------------------------------------------------------------------


async def test_a_valid_card_is_accepted_and_listed(rig: Rig) -> None:
    answer = await rig.send(message())
    assert answer["errcode"] == 0 and answer["errmsg"] == "ok" and answer["invaliduser"] == ""
    assert answer["msgid"] and answer["response_code"]
    notes = await rig.call("GET", "/admin/notifications", params={"channel": "app"})
    [note] = notes
    assert note["vendor"] == "wecom_app" and note["title"] == "Fall at Plant A"
    assert (note["task_id"], note["msgid"]) == ("rf-task-1", answer["msgid"])
    assert note["payload"]["template_card"] == card() and note["warnings"] == []
    [sent] = await rig.cards()
    assert sent["card"] == card() and sent["replaced_name"] is None and sent["updates"] == []
    assert sent["recipients"] == {"touser": ["zhangsan", "lisi"], "toparty": [], "totag": []}


async def test_advised_lengths_are_warnings_not_refusals(rig: Rig) -> None:
    long = card(main_title={"title": "T" * 37}, button_list=[{"text": "B" * 11, "key": "k"}])
    assert (await rig.send(message(long)))["errcode"] == 0
    [note] = rig.records.notifications
    assert [w.split(":")[0] for w in note["warnings"]] == [
        "template_card.main_title.title",
        "template_card.button_list[0].text",
    ]


async def test_markdown_goes_without_a_response_code(rig: Rig) -> None:
    body = message(msgtype="markdown", markdown={"content": "# Closed\nResolved by Zhang"})
    del body["template_card"]
    answer = await rig.send(body)
    assert answer["errcode"] == 0 and answer["msgid"] and "response_code" not in answer
    [note] = rig.records.notifications
    assert note["title"] == "Closed" and note["task_id"] is None
    empty = body | {"markdown": {"content": ""}}
    assert (await rig.send(empty))["errcode"] == 44004
    assert (await rig.send(body | {"markdown": {"content": "x" * 2049}}))["errcode"] == 45002


async def test_an_unknown_app_path_is_not_found(rig: Rig) -> None:
    async with rig.http.get(rig.base + "/wecom-app/nope/cgi-bin/gettoken") as response:
        assert response.status == 404


def _seven_buttons() -> dict[str, Any]:
    buttons = [{"text": f"B{i}", "key": f"k{i}"} for i in range(7)]
    return message(card(button_list=buttons))


def _without(key: str) -> dict[str, Any]:
    found = message()
    del found[key]
    return found


ELEVEN = [{"id": str(i), "text": str(i)} for i in range(11)]
INVALID = {
    "no recipients": (_without("touser"), 82001),
    "bad task_id": (message(card("bad task id!")), 42014),
    "task_id too long": (message(card("t" * 129)), 42014),
    "seven buttons": (_seven_buttons(), 40058),
    "no buttons": (message(card(button_list=[])), 40058),
    "long key": (message(card(button_list=[{"text": "A", "key": "k" * 1025}])), 42039),
    "repeated key": (message(card(button_list=[{"text": "A", "key": "k"}] * 2)), 42039),
    "button without text": (message(card(button_list=[{"key": "k"}])), 42038),
    "style a string": (message(card(button_list=[{"text": "A", "key": "k", "style": "1"}])), 40058),
    "wrong agentid": (message(agentid=AGENT + 1), 40056),
    "agentid a string": (message(agentid=str(AGENT)), 40056),
    "no agentid": (_without("agentid"), 41011),
    "no title": (message(card(main_title={"desc": "x"})), 42033),
    "eleven options": (
        message(card(button_selection={"question_key": "q", "option_list": ELEVEN})),
        42037,
    ),
    "another card type": (message(card(card_type="text_notice")), 42031),
    "link without url": (message(card(card_action={"type": 1})), 42028),
    "seven fields": (message(card(horizontal_content_list=[{"keyname": "k"}] * 7)), 42035),
    "touser a list": (message(touser=["zhangsan"]), 40058),
    "interval too long": (message(enable_duplicate_check=1, duplicate_check_interval=14401), 40058),
}


@pytest.mark.parametrize("case", INVALID)
async def test_each_invalid_card_is_refused_with_its_code(rig: Rig, case: str) -> None:
    body, code = INVALID[case]
    answer = await rig.send(body)
    assert answer["errcode"] == code, answer
    assert "msgid" not in answer and not rig.records.notifications
    [refused] = rig.records.rejections
    assert refused["channel"] == "app" and refused["reason"].startswith(f"{code} ")


async def test_a_task_id_is_the_apps_for_ever(rig: Rig) -> None:
    assert (await rig.send(message()))["errcode"] == 0
    again = message(card(main_title={"title": "Another message"}))
    answer = await rig.send(again)
    assert answer["errcode"] == 40058 and "task_id" in answer["errmsg"]
    assert len(rig.records.notifications) == 1


async def test_duplicate_check_answers_the_same_json_without_a_new_message(rig: Rig) -> None:
    body = message(enable_duplicate_check=1, duplicate_check_interval=600)
    first = await rig.send(body)
    rig.clock.now += 599
    again = await rig.send(body)
    assert again == first and len(rig.records.notifications) == 1
    rig.clock.now += 1  # the window is over: a new message, but its task_id was used
    assert (await rig.send(body))["errcode"] == 40058


async def test_scripted_faults_and_the_rate_limit(rig: Rig) -> None:
    busy = {"errcode": -1, "errmsg": "system busy"}
    fault = {"channel": "app", "times": 1, "status": 200, "body": busy}
    await rig.admin("/admin/faults", {"faults": [fault]})
    assert await rig.send(message()) == busy and not await rig.cards()  # nothing went out
    assert (await rig.send(message()))["errcode"] == 0  # so its task_id is still free
    rig.records.limits.append(RateLimit("app", count=1, window_seconds=60))
    assert (await rig.send(message(card("rf-task-2"))))["errcode"] == 0
    assert (await rig.send(message(card("rf-task-3"))))["errcode"] == 45009


# -- update_template_card ------------------------------------------------------------------


async def test_replace_name_disables_the_buttons_for_everyone(rig: Rig) -> None:
    code = (await rig.send(message()))["response_code"]
    update = {"atall": 1, "agentid": AGENT, "response_code": code}
    answer = await rig.update(update | {"button": {"replace_name": "Claimed by Zhang"}})
    assert answer["errcode"] == 0 and answer["invaliduser"] == []
    [sent] = await rig.cards()
    assert sent["replaced_name"] == "Claimed by Zhang"
    assert sent["card"]["button_list"] == [{"text": "Claimed by Zhang", "disabled": True}]
    assert sent["card"]["button_selection"]["disable"] is True
    [entry] = sent["updates"]
    assert entry["response_code"] == code and entry["button"] == {
        "replace_name": "Claimed by Zhang"
    }
    reused = await rig.update(update | {"button": {"replace_name": "again"}})
    assert reused["errcode"] == 60140 and len((await rig.cards())[0]["updates"]) == 1
    unknown = await rig.update(update | {"response_code": "nope", "button": {"replace_name": "x"}})
    assert unknown["errcode"] == 60140
    click = {"channel": "app", "task_id": "rf-task-1", "userid": "zhangsan"}
    click |= {"event_key": "claim:inc-1", "callback_url": rig.callback_base + "/cb"}
    await rig.admin("/admin/wecom-app/click", click, status=409)  # no button left to click


async def test_a_new_card_for_one_member_then_for_everyone(rig: Rig) -> None:
    code = (await rig.send(message()))["response_code"]
    new = card(main_title={"title": "Fall at Plant A", "desc": "Claimed: Zhang 14:03"})
    new["button_list"] = [{"text": "Resolved", "style": 3, "key": "resolve:inc-1"}]
    mine = {"userids": ["zhangsan", "wangwu"], "agentid": AGENT, "response_code": code}
    answer = await rig.update(mine | {"template_card": new})
    assert answer["errcode"] == 0 and answer["invaliduser"] == ["wangwu"]  # not a recipient
    [sent] = await rig.cards()
    assert sent["card"] == card() and sent["per_user"]["zhangsan"]["card"] == new
    clicked = await rig.click("resolve:inc-1")  # zhangsan's card has this button now
    everyone = {"atall": 1, "agentid": AGENT, "response_code": clicked["response_code"]}
    assert (await rig.update(everyone | {"template_card": new}))["errcode"] == 0
    [sent] = await rig.cards()
    assert sent["card"] == new and sent["per_user"] == {} and len(sent["updates"]) == 2


async def test_update_refusals(rig: Rig) -> None:
    code = (await rig.send(message()))["response_code"]
    base = {"atall": 1, "agentid": AGENT, "response_code": code}
    wrong_task = await rig.update(base | {"template_card": card("rf-task-9")})
    assert wrong_task["errcode"] == 42016
    assert (await rig.update(base | {"button": {"replace_name": "x"}, "agentid": 1}))[
        "errcode"
    ] == 40056
    both = base | {"button": {"replace_name": "x"}, "template_card": card()}
    assert (await rig.update(both))["errcode"] == 40058
    nobody = {"agentid": AGENT, "response_code": code, "button": {"replace_name": "x"}}
    assert (await rig.update(nobody))["errcode"] == 82001
    other = {"atall": 1, "agentid": 7, "response_code": code, "button": {"replace_name": "x"}}
    assert (await rig.update(other, channel="other"))["errcode"] == 42015
    rig.clock.now += 72 * 3600  # the code's 72 hours are over, unused
    assert (await rig.update(base | {"button": {"replace_name": "x"}}))["errcode"] == 60140


# -- clicks --------------------------------------------------------------------------------


async def test_a_click_arrives_encrypted_as_wecom_sends_it(rig: Rig) -> None:
    await rig.send(message())
    answer = await rig.click(selected=[{"question_key": "eta", "option_ids": ["10"]}])
    [delivery] = answer["deliveries"]
    assert delivery["status"] == 200 and delivery["timed_out"] is False
    [event] = rig.callbacks.events
    assert event["envelope"]["ToUserName"] == CORP and event["envelope"]["AgentID"] == str(AGENT)
    assert event["query"]["timestamp"] == str(int(START)) and event["query"]["nonce"].isdigit()
    assert fields(event["xml"]) == {
        "ToUserName": CORP,
        "FromUserName": "zhangsan",
        "CreateTime": str(int(START)),
        "MsgType": "event",
        "Event": "template_card_event",
        "EventKey": "claim:inc-1",
        "TaskId": "rf-task-1",
        "CardType": "button_interaction",
        "ResponseCode": answer["response_code"],
        "AgentID": str(AGENT),
    }
    assert "<EventKey><![CDATA[claim:inc-1]]></EventKey>" in event["xml"]
    [item] = ET.fromstring(event["xml"]).findall("SelectedItems/SelectedItem")
    assert item.findtext("QuestionKey") == "eta"
    assert [o.text for o in item.findall("OptionIds/OptionId")] == ["10"]
    update = {"userids": ["zhangsan"], "agentid": AGENT, "response_code": answer["response_code"]}
    assert (await rig.update(update | {"button": {"replace_name": "Claimed"}}))["errcode"] == 0
    [sent] = await rig.cards()
    assert sent["per_user"]["zhangsan"]["replaced_name"] == "Claimed"
    assert sent["replaced_name"] is None  # lisi still has the buttons
    assert sent["clicks"][0]["selected"] == [{"question_key": "eta", "option_ids": ["10"]}]


async def test_retried_deliveries_are_the_same_event_sealed_afresh(rig: Rig) -> None:
    await rig.send(message())
    answer = await rig.click(deliveries=2)
    assert [d["status"] for d in answer["deliveries"]] == [200, 200]
    first, second = rig.callbacks.events
    assert first["xml"] == second["xml"]  # same CreateTime, ResponseCode, default choice "5"
    assert "<OptionId><![CDATA[5]]></OptionId>" in first["xml"]
    assert first["query"]["nonce"] != second["query"]["nonce"]
    assert first["envelope"]["Encrypt"] != second["envelope"]["Encrypt"]


@pytest.mark.parametrize(
    ("tamper", "reason"), [("signature", "bad_signature"), ("corp", "wrong_receiver")]
)
async def test_tampered_clicks_do_not_decrypt(rig: Rig, tamper: str, reason: str) -> None:
    await rig.send(message())
    await rig.click(tamper=tamper)
    [event] = rig.callbacks.events
    assert event["rejected"] == reason and "xml" not in event


async def test_a_stale_click_is_signed_but_an_hour_old(rig: Rig) -> None:
    await rig.send(message())
    await rig.click(tamper="stale_timestamp")
    [event] = rig.callbacks.events
    assert "xml" in event and int(event["query"]["timestamp"]) == int(START) - 3600


async def test_a_callback_that_never_answers_times_out(rig: Rig) -> None:
    await rig.send(message())
    answer = await rig.click(callback_url=rig.callback_base + "/never")
    [delivery] = answer["deliveries"]
    assert delivery["timed_out"] is True and delivery["status"] is None


async def test_click_refusals(rig: Rig) -> None:
    await rig.send(message())
    body = {"channel": "app", "task_id": "rf-task-1", "userid": "zhangsan"}
    body |= {"event_key": "claim:inc-1", "callback_url": rig.callback_base + "/cb"}
    await rig.admin("/admin/wecom-app/click", body | {"userid": "wangwu"}, status=409)
    await rig.admin("/admin/wecom-app/click", body | {"event_key": "nope"}, status=409)
    await rig.admin("/admin/wecom-app/click", body | {"task_id": "nope"}, status=404)
    await rig.admin("/admin/wecom-app/click", body | {"deliveries": 5}, status=400)
    await rig.admin("/admin/wecom-app/click", body | {"tamper": "nope"}, status=400)
    wrong = {"selected": [{"question_key": "eta", "option_ids": ["99"]}]}
    await rig.admin("/admin/wecom-app/click", body | wrong, status=400)
    assert not rig.callbacks.events


# -- URL check, reset ----------------------------------------------------------------------


async def test_verify_url(rig: Rig) -> None:
    body = {"channel": "app", "callback_url": rig.callback_base + "/cb"}
    assert (await rig.admin("/admin/wecom-app/verify-url", body))["ok"] is True
    wrong_url = {"callback_url": rig.callback_base + "/wrong"}
    wrong = await rig.admin("/admin/wecom-app/verify-url", body | wrong_url)
    assert wrong["ok"] is False and wrong["status"] == 200 and wrong["body"] == "nope"
    never = {"callback_url": rig.callback_base + "/never"}
    slow = await rig.admin("/admin/wecom-app/verify-url", body | never)
    assert slow["ok"] is False and slow["timed_out"] is True


async def test_reset_forgets_tokens_and_cards(rig: Rig) -> None:
    token = (await rig.token())["access_token"]
    await rig.send(message(), token=token)
    await rig.call("POST", "/admin/reset")
    assert await rig.cards() == [] and not rig.records.notifications
    assert (await rig.send(message(), token=token))["errcode"] == 40014
    assert (await rig.send(message()))["errcode"] == 0  # the task_id is free again
