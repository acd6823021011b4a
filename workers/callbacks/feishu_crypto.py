"""Feishu / Lark callback crypto for card actions (`card.action.trigger`, schema 2.0).

Sources: Feishu's "receive and handle callbacks" and "encrypt and decrypt" pages
(open.feishu.cn/document, event-subscription-guide/callback-subscription), and `lark-oapi`'s
`core/utils/decryptor.py` and `card/action_handler.py` (read, not copied):

- With an Encrypt Key set, Feishu POSTs `{"encrypt": "<base64>"}`; the base64 is a 16-byte IV
  followed by AES-256-CBC ciphertext (PKCS#7 to 16 bytes), the key being SHA-256 of the Encrypt
  Key's UTF-8.
- `X-Lark-Signature` = hex SHA-256 of `X-Lark-Request-Timestamp` + `X-Lark-Request-Nonce` +
  the Encrypt Key, as UTF-8, followed by the raw body bytes (a plain hash, not an HMAC: any
  re-serialised body fails it).
- Inside, the Verification Token is `header.token` (schema 2.0), or `token` for the URL
  check `{"type": "url_verification", "challenge": ..., "token": ...}` and old 1.0 card
  callbacks.

`FeishuCrypto.open` checks all three and returns the callback as a dict; `seal` builds what
Feishu sends (the local simulator uses it). Each refusal is a `CallbackRejected` with its
reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from workers.callbacks.rejection import CallbackRejected


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """hex SHA-256 of timestamp + nonce + encrypt key (UTF-8), then the raw body."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


class FeishuCrypto:
    """One app's callback settings: its Encrypt Key and Verification Token."""

    def __init__(self, encrypt_key: str, verification_token: str) -> None:
        if not encrypt_key or not verification_token:
            raise ValueError("a Feishu app's callbacks need its Encrypt Key and Verification Token")
        self._encrypt_key = encrypt_key
        self._aes_key = hashlib.sha256(encrypt_key.encode()).digest()
        self._token = verification_token

    def open(self, timestamp: str, nonce: str, sent_signature: str, body: bytes) -> dict[str, Any]:
        """The callback inside `body`, checked: signature, decryption, Verification Token."""
        expected = signature(timestamp, nonce, self._encrypt_key, body)
        if not hmac.compare_digest(expected.encode(), sent_signature.lower().encode()):
            raise CallbackRejected("bad_signature")
        envelope = _json_object(body)
        sealed = envelope.get("encrypt")
        if not isinstance(sealed, str):
            raise CallbackRejected("malformed", "no 'encrypt' field")
        callback = _json_object(self.decrypt(sealed))
        header = callback.get("header")
        token = header.get("token") if isinstance(header, dict) else callback.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token, self._token):
            raise CallbackRejected("bad_token")
        return callback

    def url_check(self, body: bytes) -> dict[str, Any]:
        """An unsigned request's callback, only if it is the URL check (`url_verification`)
        with this app's Verification Token: Feishu may send the check without signing it,
        and decrypting it with the Encrypt Key is proof enough for a challenge's echo."""
        sealed = _json_object(body).get("encrypt")
        if not isinstance(sealed, str):
            raise CallbackRejected("malformed", "no 'encrypt' field")
        callback = _json_object(self.decrypt(sealed))
        token = callback.get("token")
        if callback.get("type") != "url_verification":
            raise CallbackRejected("malformed", "an unsigned callback that is no URL check")
        if not isinstance(token, str) or not hmac.compare_digest(token, self._token):
            raise CallbackRejected("bad_token")
        return callback

    def decrypt(self, sealed: str) -> bytes:
        try:
            raw = base64.b64decode(sealed, validate=True)
        except binascii.Error as exc:
            raise CallbackRejected("bad_ciphertext", str(exc)) from None
        if len(raw) < 32 or len(raw) % 16:
            raise CallbackRejected("bad_ciphertext", f"{len(raw)} bytes")
        decryptor = Cipher(algorithms.AES(self._aes_key), modes.CBC(raw[:16])).decryptor()
        padded = decryptor.update(raw[16:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise CallbackRejected("bad_padding") from None

    def seal(self, callback: dict[str, Any], iv: bytes | None = None) -> bytes:
        """The POST body Feishu sends for `callback` (`iv`: fixed, for vectors)."""
        iv = os.urandom(16) if iv is None else iv
        padder = padding.PKCS7(128).padder()
        plain = padder.update(json.dumps(callback, ensure_ascii=False).encode()) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._aes_key), modes.CBC(iv)).encryptor()
        sealed = base64.b64encode(iv + encryptor.update(plain) + encryptor.finalize()).decode()
        return json.dumps({"encrypt": sealed}).encode()

    def sign(self, timestamp: str, nonce: str, body: bytes) -> str:
        return signature(timestamp, nonce, self._encrypt_key, body)


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CallbackRejected("malformed", f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise CallbackRejected("malformed", "not a JSON object")
    return parsed
