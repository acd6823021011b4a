"""E-mail over SMTP with STARTTLS (aiosmtplib; RFC 3207 for STARTTLS, RFC 5322 for the message).

The message is plain text in the site's language with the console links; its `Message-ID`
is derived from the idempotency key, so a mail system that dedupes by Message-ID sees one
message. Untrusted text passes through `markup.PLAIN` (one line, no control characters, no
link forms a mail reader would make clickable); the subject is the title, whose untrusted labels
are clipped (`texts.MAX_LABEL_CHARS`), well within RFC 5322's 998 characters a line (the email
package folds longer headers in any case).

Outcomes by phase (`errors`): until the DATA command nothing can have been delivered, so a
refused or timed-out connection, a server that drops the connection or stops answering during
EHLO, STARTTLS, AUTH, MAIL or RCPT is `Refused` and retried; from DATA on, a timeout or a dropped
connection before the server's answer is `Uncertain` (the server may have queued the message).
SMTP answers: 4xx codes are temporary (retried), 5xx permanent (not retried), a server without
STARTTLS is refused when `starttls` is set (no plaintext fallback), and so is a certificate the
configured CA does not trust.
"""

from __future__ import annotations

import hashlib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Literal, Protocol

import aiosmtplib
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import Default

from activities.notify.errors import Refused, Uncertain, failed, rejected
from activities.notify.layout import plain_lines
from activities.notify.markup import PLAIN
from activities.notify.texts import Message
from riskflow.config.channels import EmailChannel
from riskflow.contracts.notifications import NotificationRequest


class MailSender(Protocol):
    async def send(self, channel: EmailChannel, password: str | None, mail: EmailMessage) -> str:
        """Deliver `mail` through `channel`'s server; the server's answer, or Refused/Uncertain."""
        ...


def compose(request: NotificationRequest, message: Message, channel: EmailChannel) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.title(PLAIN)
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.recipients)
    mail["Date"] = formatdate(localtime=False)
    digest = hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:32]
    mail["Message-ID"] = f"<{digest}@riskflow>"
    mail["X-Riskflow-Idempotency-Key"] = request.idempotency_key
    mail.set_content("\n".join(plain_lines(message, PLAIN)))
    return mail


class PhasedSMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when the DATA command starts: before it the server cannot
    have the message; from it on, a lost answer leaves the outcome unknown."""

    data_started = False

    async def data(
        self,
        message: str | bytes,
        /,
        *,
        timeout: float | Literal[Default.token] | None = Default.token,  # noqa: ASYNC109 (aiosmtplib's)
    ) -> SMTPResponse:
        self.data_started = True
        return await super().data(message, timeout=timeout)


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
        try:
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except OSError as exc:
            raise rejected(f"SMTP: CA file {ca_file}: {exc.strerror or exc}") from None
        client = PhasedSMTP(
            hostname=host,
            port=port,
            start_tls=channel.starttls,
            tls_context=context if channel.starttls else None,
            username=channel.username or None,
            password=password,
            timeout=channel.timeout_seconds,
        )
        try:
            async with client:
                _, answer = await client.send_message(mail)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise classify(exc, client.data_started) from None
        return answer[:200]


def classify(exc: aiosmtplib.SMTPException | OSError, data_started: bool) -> Refused | Uncertain:
    """Sort an SMTP failure by what the server answered, else by phase: no answer before DATA
    -> not sent (retried), no answer from DATA on -> Uncertain; a 4xx answer -> retried, a 5xx
    answer, no STARTTLS, failed authentication or an untrusted certificate -> not retried."""
    text = f"SMTP: {type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        return failed(text) if codes and all(400 <= c < 500 for c in codes) else rejected(text)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
        return failed(text) if exc.code < 500 else rejected(text)
    if isinstance(exc, aiosmtplib.SMTPNotSupported | ssl.SSLCertVerificationError):
        return rejected(text)
    if data_started and not isinstance(exc, aiosmtplib.SMTPConnectError):
        return Uncertain(text)
    return failed(text)
