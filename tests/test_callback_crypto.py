"""Feishu's and DingTalk's callback checks (WeCom's: tests/test_wecom_crypto.py): each vendor's
published vector where there is one, vectors computed independently with sha256sum/openssl for
the rest (docs/design/chat-app-actions.md, section 3), and each forgery refused with its reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from workers.callbacks.dingtalk_crypto import (
    card_signature,
    timestamp_seconds,
    verify_card_callback,
)
from workers.callbacks.feishu_crypto import FeishuCrypto, signature
from workers.callbacks.rejection import CallbackRejected

# Feishu's published decryption example: Encrypt Key "test key".
FEISHU_KEY, FEISHU_SEALED = "test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="
FEISHU = FeishuCrypto(FEISHU_KEY, "verification-token")
CLICK: dict[str, Any] = {
    "schema": "2.0",
    "header": {
        "event_id": "f7984f25108f8137722bb63cee927e66",
        "token": "verification-token",
        "create_time": "1700000000000000",
        "event_type": "card.action.trigger",
        "tenant_key": "tenant",
        "app_id": "cli_a1",
    },
    "event": {
        "operator": {"open_id": "ou_7d8a", "union_id": "on_94a1", "user_id": "5d9bdxxx"},
        "token": "c-295ee57216a5dc9de90fefd0aadb4b1d7d",
        "action": {"tag": "button", "value": {"op": "ack", "incident": "incident-1-hazard-1"}},
        "context": {"open_message_id": "om_1", "open_chat_id": "oc_1"},
    },
}


def test_feishus_decryption_example() -> None:
    assert FEISHU.decrypt(FEISHU_SEALED) == b"hello world"


def test_feishus_signature_on_an_independently_computed_vector() -> None:
    body = json.dumps({"encrypt": FEISHU_SEALED}, separators=(",", ":")).encode()
    assert (
        signature("1609430400", "4ca44d1c", FEISHU_KEY, body)
        == "5b7ff0ca7e8e92552c4862c254b2ee0004189636cafe1c7beeab13f62b2c55e5"
    )


def test_a_sealed_click_opens_to_the_click() -> None:
    body = FEISHU.seal(CLICK)
    sent = FEISHU.sign("1700000000", "n-1", body)
    assert FEISHU.open("1700000000", "n-1", sent.upper(), body) == CLICK


def test_the_url_check_carries_its_token_at_the_top() -> None:
    challenge = {"type": "url_verification", "challenge": "ch-1", "token": "verification-token"}
    body = FEISHU.seal(challenge)
    assert FEISHU.open("1", "2", FEISHU.sign("1", "2", body), body)["challenge"] == "ch-1"


def refused(timestamp: str, nonce: str, sent: str, body: bytes) -> str:
    with pytest.raises(CallbackRejected) as raised:
        FEISHU.open(timestamp, nonce, sent, body)
    return raised.value.reason


def test_feishu_forgeries_are_refused_with_their_reason() -> None:
    body = FEISHU.seal(CLICK)
    sent = FEISHU.sign("1700000000", "n-1", body)
    assert refused("1700000001", "n-1", sent, body) == "bad_signature"  # another timestamp
    assert refused("1700000000", "n-2", sent, body) == "bad_signature"  # another nonce
    spaced = json.dumps(json.loads(body), indent=1).encode()  # the same JSON, re-serialised
    assert refused("1700000000", "n-1", sent, spaced) == "bad_signature"
    assert refused("1700000000", "n-1", "", body) == "bad_signature"

    def signed(raw: bytes) -> str:
        return refused("1", "2", FEISHU.sign("1", "2", raw), raw)

    assert signed(FEISHU.seal(CLICK | {"header": {**CLICK["header"], "token": "x"}})) == (
        "bad_token"
    )
    assert signed(FEISHU.seal({k: v for k, v in CLICK.items() if k != "header"})) == "bad_token"
    assert signed(b"not json") == "malformed"
    assert signed(b"[1, 2]") == "malformed"
    assert signed(b'{"challenge": "plain, not encrypted"}') == "malformed"
    assert signed(b'{"encrypt": "***"}') == "bad_ciphertext"
    assert signed(b'{"encrypt": "AAAA"}') == "bad_ciphertext"  # shorter than IV + one block
    wrong_key = FeishuCrypto("another key", "verification-token").seal(CLICK, iv=bytes(16))
    assert signed(wrong_key) in {"bad_padding", "malformed"}


def test_feishu_settings_must_be_given() -> None:
    with pytest.raises(ValueError, match="Encrypt Key"):
        FeishuCrypto("", "token")


def test_dingtalk_card_signature_on_an_independently_computed_vector() -> None:
    assert (
        card_signature("example-secret", "1700000000000")
        == "I85VWQbGCqbDkjEb7rsCEkTKI9QSL3wzLms54MiwXlg="
    )
    verify_card_callback(
        "example-secret", "1700000000000", card_signature("example-secret", "1700000000000")
    )


@pytest.mark.parametrize(
    ("secret", "timestamp", "sent"),
    [
        ("another-secret", "1700000000000", "I85VWQbGCqbDkjEb7rsCEkTKI9QSL3wzLms54MiwXlg="),
        ("example-secret", "1700000000001", "I85VWQbGCqbDkjEb7rsCEkTKI9QSL3wzLms54MiwXlg="),
        ("example-secret", "1700000000000", ""),
    ],
)
def test_dingtalk_forgeries_are_refused(secret: str, timestamp: str, sent: str) -> None:
    with pytest.raises(CallbackRejected) as raised:
        verify_card_callback(secret, timestamp, sent)
    assert raised.value.reason == "bad_signature"


def test_dingtalk_timestamps_in_either_unit() -> None:
    assert timestamp_seconds("1700000000000") == timestamp_seconds("1700000000") == 1.7e9
    for bad in ("", "17e8", "-1700000000", "170000000000", "1700000000000000"):
        with pytest.raises(CallbackRejected):
            timestamp_seconds(bad)
