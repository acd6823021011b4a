"""A failed send is sorted by the phase it reached, over real connections: a port that refuses,
a listener whose backlog is full (the connect never completes), a session whose only pooled
connection is busy, a server that accepts and never answers, SMTP servers that drop or fall
silent before DATA and after the message. Not sent -> the claim is released and the retry
sends; maybe sent -> the marker says `unknown` and the retry answers `already_sent`, uncertain.
And the pure part: vendor answers and SMTP failures sorted by what they mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from activities.notify import NotifyActivities, dingtalk, feishu, mail, webhook, wecom
from activities.notify.errors import Refused, Uncertain
from activities.notify.http import Answer, verdict
from activities.notify.mail import SmtpMailer
from devstack.localstack.process import free_port
from riskflow.config.channels import ChannelSecrets, EmailChannel, NotificationSettings
from riskflow.contracts.notifications import (
    NOTIFY_CHANNEL_ERROR,
    NOTIFY_RATE_LIMITED,
    NOTIFY_REJECTED,
)
from riskflow.names import notification_marker_key
from tests.test_notify import Rig, channels, expect_error, request, rig

__all__ = ["rig"]  # the fixture, shared with tests/test_notify.py
RATE, REJECTED, OGW = NOTIFY_RATE_LIMITED, NOTIFY_REJECTED, "x-ogw-ratelimit-reset"


async def marker(redis: Redis, key: str) -> str | None:
    raw = await redis.get(notification_marker_key(key))
    return None if raw is None else str(json.loads(raw)["state"])


def with_channel(config: NotificationSettings, name: str, **update: object) -> NotificationSettings:
    changed = config.channels[name].model_copy(update=update)
    return config.model_copy(update={"channels": {**config.channels, name: changed}})


def acts_for(
    rig: Rig, config: NotificationSettings, session: aiohttp.ClientSession | None = None
) -> NotifyActivities:
    mailer = SmtpMailer(rig.receiver.host, rig.receiver.smtp_port, rig.receiver.cert_file)
    secrets = ChannelSecrets.from_config(config, {})
    return NotifyActivities(
        session or rig.http, mailer, rig.redis, config, secrets, rig.receiver.url
    )


async def assert_not_sent_then_sent(rig: Rig, name: str, config: NotificationSettings) -> None:
    """The attempt through `config` failed as not sent: retryable, no marker; the same key
    through the working receiver is then sent, once."""
    req = request(name)
    error = await expect_error(rig, req, acts_for(rig, config))
    assert error.type == NOTIFY_CHANNEL_ERROR and not error.non_retryable, error
    assert await marker(rig.redis, req.idempotency_key) is None
    assert (await rig.notify(req)).status == "sent"
    assert len(rig.received()) == 1


async def assert_uncertain(rig: Rig, name: str, config: NotificationSettings) -> None:
    req = request(name)
    acts = acts_for(rig, config)
    error = await expect_error(rig, req, acts)
    assert error.type == NOTIFY_CHANNEL_ERROR and "unknown" in str(error), error
    assert await marker(rig.redis, req.idempotency_key) == "unknown"
    retried = await rig.notify(req, acts)
    assert retried.status == "already_sent" and retried.uncertain


# -- servers that misbehave --------------------------------------------------------------------


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose listener never accepts and whose backlog is full: a new connect waits
    for a SYN-ACK that does not come (Linux drops SYNs to a full accept queue)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for s in (*fillers, listener):
            s.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(
    handler: Handler,
) -> AsyncIterator[tuple[int, list[bytes], asyncio.Event]]:
    """A raw TCP server on a free port; yields the port, one entry per connection accepted,
    and an event set at the first."""
    seen: list[bytes] = []
    accepted = asyncio.Event()
    tasks: set[asyncio.Task[object]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        seen.append(b"")
        accepted.set()
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen, accepted
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    await asyncio.sleep(30)


async def ok_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A DingTalk-shaped success that claims keep-alive."""
    await reader.readuntil(b"\r\n\r\n")
    body = b'{"errcode":0,"errmsg":"ok"}'
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    await asyncio.sleep(0.5)


def smtp(drop_at: str, silent: bool = False) -> Handler:
    """A plain SMTP server that drops the connection (or stops answering) when the client
    sends `drop_at`: "EHLO", "MAIL", "RCPT", "DATA" or "." (the end of the message)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP\r\n")
        in_data = False
        while line := await reader.readline():
            command = b"." if in_data and line == b".\r\n" else line[:4].upper()
            if in_data and command != b".":
                continue
            if command.decode().strip() == drop_at:
                if silent:
                    await asyncio.sleep(30)
                return
            if command == b"EHLO":
                writer.write(b"250-test\r\n250 8BITMIME\r\n")
            elif command == b"DATA":
                in_data = True
                writer.write(b"354 go on\r\n")
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()

    return serve


# -- HTTP -----------------------------------------------------------------------------------------


async def test_a_port_that_refuses_is_not_sent(rig: Rig) -> None:
    gone = f"http://127.0.0.1:{free_port()}/dingtalk/robot/send?access_token=ding"
    config = with_channel(channels(rig.receiver.url), "ding", url=SecretStr(gone))
    await assert_not_sent_then_sent(rig, "ding", config)


async def test_a_connect_that_never_completes_is_not_sent(rig: Rig) -> None:
    """Formerly a bare TimeoutError, taken for 'maybe sent': the retry answered already_sent
    and nobody got the message."""
    with full_backlog() as port:
        url = f"http://127.0.0.1:{port}/dingtalk/robot/send?access_token=ding"
        config = with_channel(
            channels(rig.receiver.url), "ding", url=SecretStr(url), timeout_seconds=1.0
        )
        await assert_not_sent_then_sent(rig, "ding", config)


async def test_waiting_for_a_pooled_connection_is_not_sent(rig: Rig) -> None:
    """The session's only connection is busy: the wait for it times out, nothing was sent."""
    async with (
        tcp_server(never_answer) as (port, _, accepted),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, force_close=True)) as session,
    ):
        busy = asyncio.create_task(session.post(f"http://127.0.0.1:{port}/", data=b"x"))
        await asyncio.wait_for(accepted.wait(), 5)
        config = with_channel(channels(rig.receiver.url), "wecom", timeout_seconds=1.0)
        req = request("wecom")
        error = await expect_error(rig, req, acts_for(rig, config, session))
        assert error.type == NOTIFY_CHANNEL_ERROR and "no connection" in str(error), error
        assert await marker(rig.redis, req.idempotency_key) is None
        busy.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await busy
    assert not rig.received()
    assert (await rig.notify(req)).status == "sent"
    assert len(rig.received("wecom")) == 1


async def test_a_server_that_accepts_and_never_answers_leaves_the_outcome_unknown(
    rig: Rig,
) -> None:
    async with tcp_server(never_answer) as (port, _, _):
        url = f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key=k"
        config = with_channel(
            channels(rig.receiver.url), "wecom", url=SecretStr(url), timeout_seconds=1.0
        )
        await assert_uncertain(rig, "wecom", config)


async def test_every_request_goes_on_a_connection_of_its_own(rig: Rig) -> None:
    """A pooled keep-alive connection the server has closed fails like a disconnect after
    sending; riskflow never reuses one, so such a disconnect cannot be mistaken."""
    async with tcp_server(ok_answer) as (port, seen, _):
        url = f"http://127.0.0.1:{port}/robot/send?access_token=ding"
        config = with_channel(channels(rig.receiver.url), "ding", url=SecretStr(url))
        acts = acts_for(rig, config)
        for _ in range(3):
            assert (await rig.notify(request("ding"), acts)).status == "sent"
        assert len(seen) == 3


# -- SMTP -----------------------------------------------------------------------------------------


def plain_mail(rig: Rig, port: int) -> NotificationSettings:
    plain = EmailChannel(
        type="email",
        host="127.0.0.1",
        port=port,
        starttls=False,
        recipients=["ops@example.com"],
        timeout_seconds=1.0,
    )
    config = channels(rig.receiver.url)
    return config.model_copy(update={"channels": {**config.channels, "mail": plain}})


@pytest.mark.parametrize(
    ("drop_at", "silent"),
    [("EHLO", False), ("MAIL", False), ("RCPT", False), ("EHLO", True), ("MAIL", True)],
)
async def test_smtp_that_drops_or_stalls_before_data_is_not_sent(
    rig: Rig, drop_at: str, silent: bool
) -> None:
    async with tcp_server(smtp(drop_at, silent)) as (port, _, _):
        await assert_not_sent_then_sent(rig, "mail", plain_mail(rig, port))


@pytest.mark.parametrize("silent", [False, True])
async def test_smtp_that_drops_or_stalls_after_the_message_leaves_it_unknown(
    rig: Rig, silent: bool
) -> None:
    async with tcp_server(smtp(".", silent)) as (port, _, _):
        await assert_uncertain(rig, "mail", plain_mail(rig, port))


# -- vendor codes and answers --------------------------------------------------------------


def _refused(vendor: Any, status: int, body: dict[str, Any], headers: dict[str, str]) -> Refused:
    with pytest.raises(Refused) as caught:
        retry_after = headers.get("Retry-After") or headers.get(OGW)
        verdict(vendor, Answer(status, retry_after, json.dumps(body)))
    return caught.value


FREQUENCY = "request trigger frequency limit"
ANSWERS: list[tuple[Any, int, dict[str, Any], dict[str, str], str, float | None]] = [
    (
        dingtalk.DINGTALK,
        200,
        {"errcode": 130101, "errmsg": "send too fast"},
        {},
        RATE,
        600,
    ),
    (
        dingtalk.DINGTALK,
        200,
        {"errcode": 460101, "errmsg": "body 大小不合法"},
        {},
        REJECTED,
        None,
    ),
    (
        dingtalk.DINGTALK,
        200,
        {"errcode": 90030, "errmsg": "webhook over limit"},
        {},
        REJECTED,
        None,
    ),
    (
        wecom.WECOM,
        200,
        {"errcode": 45009, "errmsg": "api freq out of limit"},
        {},
        RATE,
        60,
    ),
    (
        wecom.WECOM,
        200,
        {"errcode": 40058, "errmsg": "exceed max length 4096"},
        {},
        REJECTED,
        None,
    ),
    (feishu.FEISHU, 200, {"code": 11232, "msg": "frequency limited"}, {}, RATE, 60),
    (feishu.FEISHU, 400, {"code": 99991400, "msg": FREQUENCY}, {OGW: "12"}, RATE, 12),
    (feishu.FEISHU, 429, {"code": 99991400, "msg": FREQUENCY}, {OGW: "7"}, RATE, 7),
    (feishu.FEISHU, 400, {"code": 9499, "msg": "Bad Request"}, {}, REJECTED, None),
    (webhook.WEBHOOK, 503, {"error": "down"}, {}, NOTIFY_CHANNEL_ERROR, None),
]


@pytest.mark.parametrize(("vendor", "status", "body", "headers", "kind", "delay"), ANSWERS)
def test_vendor_answers_are_classified_with_the_vendors_wait(
    vendor: Any,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    kind: str,
    delay: float | None,
) -> None:
    refused = _refused(vendor, status, body, headers)
    assert refused.kind == kind and refused.retry_after_seconds == delay, refused


def test_a_success_status_whose_answer_was_lost_is_uncertain() -> None:
    with pytest.raises(Uncertain):
        verdict(dingtalk.DINGTALK, Answer(200, None, None))
    with pytest.raises(Refused):  # an error status says enough without its body
        verdict(dingtalk.DINGTALK, Answer(502, None, None))


# -- SMTP failures by phase ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "data_started", "outcome"),
    [
        (aiosmtplib.SMTPConnectError("refused"), False, NOTIFY_CHANNEL_ERROR),
        (aiosmtplib.SMTPConnectTimeoutError("slow"), False, NOTIFY_CHANNEL_ERROR),
        (
            aiosmtplib.SMTPServerDisconnected("gone at MAIL"),
            False,
            NOTIFY_CHANNEL_ERROR,
        ),
        (
            aiosmtplib.SMTPReadTimeoutError("silent at EHLO"),
            False,
            NOTIFY_CHANNEL_ERROR,
        ),
        (ConnectionResetError("reset during STARTTLS"), False, NOTIFY_CHANNEL_ERROR),
        (aiosmtplib.SMTPServerDisconnected("gone after the data"), True, "uncertain"),
        (aiosmtplib.SMTPReadTimeoutError("no answer to the data"), True, "uncertain"),
        (aiosmtplib.SMTPDataError(451, "try later"), True, NOTIFY_CHANNEL_ERROR),
        (aiosmtplib.SMTPDataError(554, "rejected"), True, NOTIFY_REJECTED),
        (
            aiosmtplib.SMTPAuthenticationError(535, "bad password"),
            False,
            NOTIFY_REJECTED,
        ),
        (aiosmtplib.SMTPNotSupported("no STARTTLS"), False, NOTIFY_REJECTED),
    ],
)
def test_smtp_failures_are_sorted_by_phase_and_answer(
    exc: Exception, data_started: bool, outcome: str
) -> None:
    assert isinstance(exc, aiosmtplib.SMTPException | OSError)
    result = mail.classify(exc, data_started)
    assert (result.kind if isinstance(result, Refused) else "uncertain") == outcome
