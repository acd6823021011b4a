"""What the chat-app end-to-end tests share (test_wecom_app_actions, test_feishu_app_actions,
test_dingtalk_app_actions, test_dingtalk_stream_actions, test_app_cards_everywhere): the
vendor simulators on a receiver of the test's own, a real worker sending to it, the callback
listener on a free port, and the incidents opened, terminated at the end."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from temporalio.client import Client, WorkflowHandle

from devstack.localstack.process import free_port
from devstack.receivers.runtime import Receiver
from riskflow.config.channels import ChannelSecrets, NotificationSettings
from riskflow.config.incidents import IncidentConfig
from riskflow.config.people import PeopleDirectory
from riskflow.config.settings import Settings
from riskflow.config.sites import SiteConfig
from riskflow.contracts.incidents import IncidentView
from riskflow.infra.endpoints import Endpoints
from tests.test_incident_workflow import Recorder, fall, open_incident, until
from workers.callbacks.listener import listening
from workers.worker.worker import build_worker, worker_deps


@dataclass
class Parts:
    """The programs of a world that a test may stop and start again: the incident worker and
    the callback listener (with its clicks' worker), which serves `callback_path`."""

    client: Client
    settings: Settings
    endpoints: Endpoints
    task_queue: str
    worker: contextlib.AsyncExitStack | None = None
    listener: contextlib.AsyncExitStack | None = None
    callback_url: str = ""
    callback_path: str = ""

    async def start_worker(self) -> None:
        stack = contextlib.AsyncExitStack()
        deps = await stack.enter_async_context(worker_deps(self.settings, self.endpoints))
        await stack.enter_async_context(
            build_worker(self.client, self.settings, deps, self.task_queue)
        )
        self.worker = stack

    async def start_listener(self) -> None:
        stack = contextlib.AsyncExitStack()
        runner, _ = await stack.enter_async_context(
            listening(self.settings, self.client, self.endpoints, 0, f"{self.task_queue}-clicks")
        )
        host, port = runner.addresses[0][:2]
        self.callback_url = f"http://{host}:{port}{self.callback_path}"
        self.listener = stack

    @property
    def listener_base(self) -> str:
        """The listener's http://host:port."""
        return self.callback_url.removesuffix(self.callback_path)

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.aclose()
            self.worker = None

    async def stop_listener(self) -> None:
        if self.listener is not None:
            await self.listener.aclose()
            self.listener = None


@dataclass
class AppStack:
    """A running world: the simulators' `receiver`, a client session, the incidents opened
    (`sent`) and the programs (`parts`)."""

    receiver: Receiver
    http: aiohttp.ClientSession
    sent: Recorder
    parts: Parts


@contextlib.asynccontextmanager
async def app_stack(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    task_queue: str,
    tmp: Path,
    channels: NotificationSettings,
    people: PeopleDirectory,
    site: SiteConfig,
    callback_path: str,
) -> AsyncIterator[AppStack]:
    receiver = Receiver("127.0.0.1", free_port(), free_port(), tmp / "smtp-cert.pem")
    await receiver.start(channels, ChannelSecrets.from_config(channels, {}))
    ours = settings.model_copy(
        update={"notifications": channels, "people": people, "sites": [site]}
    )
    endpoints = dataclasses.replace(stack, receiver=receiver.url)
    parts = Parts(client, ours, endpoints, task_queue, callback_path=callback_path)
    sent = Recorder()
    try:
        await parts.start_worker()
        await parts.start_listener()
        async with aiohttp.ClientSession() as http:
            try:
                yield AppStack(receiver, http, sent, parts)
            finally:
                for handle in sent.started:
                    with contextlib.suppress(Exception):
                        await handle.terminate("test over")
    finally:
        await parts.stop_listener()
        await parts.stop_worker()
        await receiver.stop()


async def fall_opened(
    sent: Recorder,
    client: Client,
    task_queue: str,
    camera: str,
    config: IncidentConfig,
    site: SiteConfig,
) -> tuple[WorkflowHandle[Any, Any], IncidentView]:
    """A fall on `camera`: its incident, once level 0 was told."""
    handle = await open_incident(
        sent, client, task_queue, fall(camera, 1), config, site.timezone, site.language
    )
    return handle, await until(handle, lambda v: v.steps_sent == ["L0"])
