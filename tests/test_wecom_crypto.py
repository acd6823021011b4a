"""WeCom's callback crypto against the vendor's published vectors (developer.work.weixin.qq.com
/document/path/90968 and its Python sample), and each way a forged callback is refused."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from workers.callbacks.rejection import CallbackRejected
from workers.callbacks.wecom_crypto import WeComCrypto, signature

# The vendor's sample app: token, EncodingAESKey, corp id.
TOKEN, KEY, CORP = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7"
# Its POST vector: a text message to the app (timestamp, nonce, Encrypt, msg_signature).
POST = (
    "1409659813",
    "1372623149",
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qcz"
    "cdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==",
    "477715d11cdb4164915debcba66cb864d751f3e6",
)
# Its GET vector: the URL check's echostr.
GET = (
    "1409659589",
    "263014780",
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
    "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
)
CRYPTO = WeComCrypto(TOKEN, KEY, CORP)


def test_the_vendors_url_check_vector() -> None:
    timestamp, nonce, echostr, msg_signature = GET
    assert signature(TOKEN, timestamp, nonce, echostr) == msg_signature
    assert CRYPTO.decrypt(msg_signature, timestamp, nonce, echostr) == b"1616140317555161061"


def test_the_vendors_message_vector() -> None:
    timestamp, nonce, encrypt, msg_signature = POST
    message = CRYPTO.decrypt(msg_signature.upper(), timestamp, nonce, encrypt)
    assert b"<FromUserName><![CDATA[mycreate]]></FromUserName>" in message
    assert b"<Content><![CDATA[hello]]></Content>" in message


def test_sealing_the_vectors_message_again_gives_the_vendors_bytes() -> None:
    """With the vector's own 16 random bytes, `encrypt` reproduces WeCom's ciphertext."""
    timestamp, nonce, encrypt, msg_signature = POST
    message = CRYPTO.decrypt(msg_signature, timestamp, nonce, encrypt)
    sealed = CRYPTO.encrypt(message, timestamp, nonce, prefix=b"0960688932c47ef1")
    assert (sealed.encrypt, sealed.signature) == (encrypt, msg_signature)


@given(st.binary(max_size=3000), st.text("0123456789", min_size=1, max_size=12))
def test_what_is_sealed_opens(message: bytes, nonce: str) -> None:
    sealed = CRYPTO.encrypt(message, "1700000000", nonce)
    assert len(base64.b64decode(sealed.encrypt)) % 32 == 0
    assert CRYPTO.decrypt(sealed.signature, "1700000000", nonce, sealed.encrypt) == message


def resigned(encrypt: str) -> tuple[str, str, str, str]:
    """A forged Encrypt with a correct signature (as if the token had leaked)."""
    return signature(TOKEN, "1", "2", encrypt), "1", "2", encrypt


def flip_last_block(encrypt: str) -> str:
    raw = bytearray(base64.b64decode(encrypt))
    raw[-20] ^= 0x55  # the block before the last: garbles the padding of the last
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        ((POST[3][:-1] + "0", *POST[:3]), "bad_signature"),  # signature off by one digit
        (("", *POST[:3]), "bad_signature"),
        ((POST[3], "1409659814", *POST[1:3]), "bad_signature"),  # another timestamp
        ((POST[3], POST[0], POST[1], POST[2][:-4] + "AAA="), "bad_signature"),  # body changed
        (resigned("not base64!"), "bad_ciphertext"),
        (resigned(base64.b64encode(b"x" * 31).decode()), "bad_ciphertext"),  # not 32-byte blocks
        (resigned(""), "bad_ciphertext"),
        (resigned(flip_last_block(POST[2])), "bad_padding"),
    ],
)
def test_forged_callbacks_are_refused_with_a_reason(
    call: tuple[str, str, str, str], reason: str
) -> None:
    with pytest.raises(CallbackRejected) as refused:
        CRYPTO.decrypt(*call)
    assert refused.value.reason == reason


def test_a_message_for_another_corp_is_refused() -> None:
    other = WeComCrypto(TOKEN, KEY, "ww-another-corp")
    sealed = other.encrypt(b"<xml/>", "1700000000", "42")
    with pytest.raises(CallbackRejected) as refused:
        CRYPTO.decrypt(sealed.signature, "1700000000", "42", sealed.encrypt)
    assert refused.value.reason == "wrong_receiver"


def seal_raw(plain: bytes) -> str:
    """`plain` (already laid out and padded) sealed with the sample app's key."""
    key = base64.b64decode(KEY + "=")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


@pytest.mark.parametrize(
    "plain",
    [
        b"p" * 16 + struct.pack(">I", 0xFFFFFFFF) + CORP.encode() + bytes([26]) * 26,
        b"p" * 16 + struct.pack(">I", 30) + CORP.encode() + bytes([26]) * 26,
        b"p" * 16 + bytes([16]) * 16,  # shorter than the 20-byte header
    ],
)
def test_a_length_beyond_the_message_is_refused(plain: bytes) -> None:
    assert len(plain) % 32 == 0
    with pytest.raises(CallbackRejected) as refused:
        CRYPTO.decrypt(*resigned(seal_raw(plain)))
    assert refused.value.reason == "bad_length"


@pytest.mark.parametrize("key", ["short", KEY + "A", KEY[:-1] + "!"])
def test_a_malformed_encoding_aes_key_is_a_clear_error(key: str) -> None:
    with pytest.raises(ValueError, match="EncodingAESKey"):
        WeComCrypto(TOKEN, key, CORP)
