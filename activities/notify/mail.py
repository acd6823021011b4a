"""E-mail over SMTP with STARTTLS (aiosmtplib; RFC 3207 for STARTTLS, RFC 5322 for the message).

The message is plain text in the site's language with the console links; its `Message-ID`
is derived from the idempotency key, so a mail system that dedupes by Message-ID sees one
message. SMTP answers: 4xx codes are temporary (retried), 5xx permanent (not retried), a
server without STARTTLS is refused when `starttls` is set (no plaintext fallback). A timeout or
a dropped connection may come after the server accepted the data: `Uncertain`.
"""

from __future__ import annotations

import hashlib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

import aiosmtplib

from activities.notify.errors import Refused, Uncertain, failed, rejected
from activities.notify.texts import Message
from riskflow.config.channels import EmailChannel
from riskflow.contracts.notifications import NotificationRequest


class MailSender(Protocol):
    async def send(self, channel: EmailChannel, password: str | None, mail: EmailMessage) -> str:
        """Deliver `mail` through `channel`'s server; the server's answer, or Refused/Uncertain."""
        ...


def compose(request: NotificationRequest, message: Message, channel: EmailChannel) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.recipients)
    mail["Date"] = formatdate(localtime=False)
    digest = hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:32]
    mail["Message-ID"] = f"<{digest}@riskflow>"
    mail["X-Riskflow-Idempotency-Key"] = request.idempotency_key
    lines = message.plain_lines()
    if message.ack_url:
        lines += ["", f"{message.ack_label}: {message.ack_url}"]
        lines += [f"{message.dismiss_label}: {message.dismiss_url}"]
    mail.set_content("\n".join(lines))
    return mail


class SmtpMailer:
    """aiosmtplib client. A channel without `host` uses the local receiver (`local_host`,
    `local_port`, trusting `local_ca_file`)."""

    def __init__(
        self, local_host: str = "", local_port: int = 0, local_ca_file: Path | None = None
    ) -> None:
        self._local = (local_host, local_port, local_ca_file)

    async def send(self, channel: EmailChannel, password: str | None, mail: EmailMessage) -> str:
        host, port, ca_file = channel.host, channel.port, channel.ca_file
        if not host:
            host, port, ca_file = self._local
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        try:
            _, answer = await aiosmtplib.send(
                mail,
                hostname=host,
                port=port,
                start_tls=channel.starttls,
                tls_context=context if channel.starttls else None,
                username=channel.username or None,
                password=password,
                timeout=channel.timeout_seconds,
            )
        except aiosmtplib.SMTPException as exc:
            raise classify(exc) from None
        return answer[:200]


def classify(exc: aiosmtplib.SMTPException) -> Refused | Uncertain:
    """Sort an aiosmtplib error: never connected or a 4xx answer -> retried, a 5xx answer or no
    STARTTLS -> not retried, a timeout or disconnect -> Uncertain."""
    text = f"SMTP: {type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return failed(text)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | aiosmtplib.SMTPServerDisconnected):
        return Uncertain(text)
    if isinstance(exc, aiosmtplib.SMTPNotSupported | aiosmtplib.SMTPAuthenticationError):
        return rejected(text)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        return failed(text) if codes and all(400 <= c < 500 for c in codes) else rejected(text)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return failed(text) if 400 <= exc.code < 500 else rejected(text)
    return failed(text)
