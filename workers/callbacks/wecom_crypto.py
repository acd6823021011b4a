"""WeCom's callback crypto (企业微信 "加解密方案", developer.work.weixin.qq.com/document/path/90968;
the vendor's sample `sbzhu/weworkapi_python` callback_python3, read, not copied).

A self-built app's receive URL gets `msg_signature`, `timestamp` and `nonce` in the query and
an `Encrypt` field (base64; XML `<Encrypt>` in a POST, `echostr` in the URL check GET):

- `msg_signature` = hex SHA-1 of the four strings token, timestamp, nonce and Encrypt, sorted
  and joined;
- AES-256-CBC, key = base64-decode(EncodingAESKey + "=") (43 characters -> 32 bytes),
  IV = the key's first 16 bytes, PKCS#7 padding to a multiple of 32 bytes (not AES's 16);
- plaintext = 16 random bytes, the message's length in bytes (4 bytes, big-endian), the
  message, then the receive id (the corp id for a self-built app).

`WeComCrypto.decrypt` checks all of that (signature compared in constant time) and raises
`CallbackRejected` with a reason for each way it can fail; `encrypt` builds what WeCom sends
(the local simulator uses it) and what a passive reply carries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from workers.callbacks.rejection import CallbackRejected

BLOCK = 32  # WeCom pads to 32 bytes, not AES's 16


@dataclass(frozen=True)
class Sealed:
    """What WeCom sends: the base64 `encrypt` and its `signature` for `timestamp`, `nonce`."""

    encrypt: str
    signature: str
    timestamp: str
    nonce: str


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """hex SHA-1 of the four strings sorted and joined."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


class WeComCrypto:
    """One app's callback settings: its `token`, `encoding_aes_key` (43 characters) and
    `receive_id` (the corp id). ValueError for a key that is not 43 base64 characters."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if len(encoding_aes_key) != 43:
            got = len(encoding_aes_key)
            raise ValueError(f"an EncodingAESKey must have 43 characters, not {got}")
        try:
            self._key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error as exc:
            raise ValueError(f"an EncodingAESKey is base64: {exc}") from None
        self._token = token
        self._receive_id = receive_id.encode()

    def decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> bytes:
        """The message inside `encrypt` (an event's XML, or the URL check's echostr)."""
        expected = signature(self._token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode(), msg_signature.lower().encode()):
            raise CallbackRejected("bad_signature")
        try:
            sealed = base64.b64decode(encrypt, validate=True)
        except binascii.Error as exc:
            raise CallbackRejected("bad_ciphertext", str(exc)) from None
        if not sealed or len(sealed) % BLOCK:
            raise CallbackRejected("bad_ciphertext", f"{len(sealed)} bytes")
        decryptor = self._cipher().decryptor()
        padded = decryptor.update(sealed) + decryptor.finalize()
        pad = padded[-1]
        if not 1 <= pad <= BLOCK or padded[-pad:] != bytes([pad]) * pad:
            raise CallbackRejected("bad_padding")
        plain = padded[:-pad]
        if len(plain) < 20:
            raise CallbackRejected("bad_length", "shorter than its header")
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise CallbackRejected("bad_length", f"{length} bytes announced")
        message, receiver = plain[20 : 20 + length], plain[20 + length :]
        if not hmac.compare_digest(receiver, self._receive_id):
            raise CallbackRejected("wrong_receiver", receiver.decode(errors="replace"))
        return message

    def encrypt(
        self, message: bytes, timestamp: str, nonce: str, prefix: bytes | None = None
    ) -> Sealed:
        """`message` sealed as WeCom seals it (`prefix`: the 16 random bytes, for vectors)."""
        prefix = os.urandom(16) if prefix is None else prefix
        if len(prefix) != 16:
            raise ValueError("the random prefix has 16 bytes")
        plain = prefix + struct.pack(">I", len(message)) + message + self._receive_id
        pad = BLOCK - len(plain) % BLOCK
        encryptor = self._cipher().encryptor()
        sealed = encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()
        encrypt = base64.b64encode(sealed).decode()
        return Sealed(encrypt, signature(self._token, timestamp, nonce, encrypt), timestamp, nonce)

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))
