"""An SMTP server (aiosmtpd) that requires STARTTLS and records every mail it accepts.

The certificate is self-signed for `localhost` and the host's address, written as PEM to
`riskflow.infra.endpoints.receiver_cert_file(state_dir)` so the worker's SMTP client can trust it.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.receivers.markup import active_markup
from devstack.receivers.records import Records


def write_certificate(cert_file: Path, host: str) -> Path:
    """A self-signed certificate and key for `localhost` and `host`; returns the key's path."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "riskflow local receiver")])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = cert_file.with_suffix(".key")
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return key_file


class RecordingHandler:
    """aiosmtpd handler: every accepted mail becomes a notification of vendor `email`."""

    def __init__(self, records: Records) -> None:
        self._records = records

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else (content or "").encode()
        mail = message_from_bytes(raw, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        body = mail.get_body(preferencelist=("plain",))
        payload: dict[str, Any] = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(mail["Subject"] or ""),
            "message_id": str(mail["Message-ID"] or ""),
            "text": body.get_content() if body is not None else "",
            "starttls": session.ssl is not None,
        }
        self._records.accept(
            "email",
            "email",
            payload,
            title=payload["subject"],
            idempotency_key=str(mail["X-Riskflow-Idempotency-Key"] or ""),
            markup=active_markup("email", payload),
        )
        return "250 Message accepted for delivery"


async def start_smtp(
    records: Records, host: str, port: int, cert_file: Path
) -> asyncio.AbstractServer:
    """Serve SMTP on `host:port` in this event loop; STARTTLS is required before MAIL."""
    key_file = write_certificate(cert_file, host)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    handler = RecordingHandler(records)

    def protocol() -> SMTP:
        return SMTP(
            handler,
            hostname="localhost",
            tls_context=context,
            require_starttls=True,
            enable_SMTPUTF8=True,
        )

    loop = asyncio.get_running_loop()
    return await loop.create_server(protocol, host, port)
