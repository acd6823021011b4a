"""Start and stop the receiver (HTTP + SMTP) in the running event loop: used by
`python -m devstack.receivers` and by test fixtures."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from devstack.receivers.records import Records
from devstack.receivers.server import build_app
from devstack.receivers.smtp import start_smtp
from riskflow.config.channels import ChannelSecrets, NotificationSettings


@dataclass
class Receiver:
    """The running receiver: `records` is what it got, `url` its HTTP base."""

    host: str
    http_port: int
    smtp_port: int
    cert_file: Path
    records: Records = field(default_factory=Records)
    _runner: web.AppRunner | None = None
    _smtp: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    async def start(self, config: NotificationSettings, secrets: ChannelSecrets) -> None:
        self._smtp = await start_smtp(self.records, self.host, self.smtp_port, self.cert_file)
        self._runner = web.AppRunner(build_app(config, secrets, self.records), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.http_port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._smtp is not None:
            self._smtp.close()
            await self._smtp.wait_closed()
