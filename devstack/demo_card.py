"""The demo's chat-app card (`riskflow demo`): a WeCom app channel on a simulator of the
demo's own (`devstack.receivers`, in process, on a free port), told at level 0 beside the
shipped channels, the callback listener serving its clicks, and one click: 王工 (a person of
the demo's directory, operator at every site) picks 马上到 · 10 分钟 on the first camera's
card. The demo then shows the incident acknowledged by him and the card as everyone sees it.

Nothing of it is in the shipped configuration: README "Answering from the chat apps" shows
how to configure an app of each vendor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from devstack.localstack.process import free_port
from devstack.receivers.runtime import Receiver
from riskflow.config.channels import ChannelSecrets, NotificationSettings, WeComAppChannel
from riskflow.config.people import PeopleDirectory
from riskflow.config.settings import Settings
from riskflow.contracts.card_actions import ButtonKey
from riskflow.contracts.incidents import IncidentState
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import redis_client
from workers.callbacks.listener import listening
from workers.common.client import connect
from workers.incidents.client import show_incident

APP, USER = "demo-app", "WangGong"
_PLACEHOLDER_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"  # WeCom's published sample


def with_card(settings: Settings, receiver_url: str) -> Settings:
    """`settings` with the demo's WeCom app channel at level 0 and 王工 in the directory."""
    channel = WeComAppChannel(
        type="wecom_app",
        url=f"{receiver_url}/wecom-app/{APP}",
        corp_id="wwdemo0000000000",
        agent_id=1000002,
        secret="demo-app-secret",
        to_users=[USER],
        callback_token="demo-callback-token",
        callback_aes_key=_PLACEHOLDER_AES_KEY,
    )
    notifications = settings.notifications.model_copy(
        update={"channels": {**settings.notifications.channels, APP: channel}}
    )
    first, *rest = settings.incidents.escalation
    told = first.model_copy(update={"channels": [*first.channels, APP]})
    incidents = settings.incidents.model_copy(update={"escalation": [told, *rest]})
    wang = {
        "id": "wang.gong",
        "name": "王工",
        "roles": {"*": "operator"},
        "wecom": {"userid": USER},
    }
    people = PeopleDirectory.model_validate([*settings.people.model_dump(), wang])
    return settings.model_copy(
        update={"notifications": notifications, "incidents": incidents, "people": people}
    )


@dataclass
class DemoCard:
    settings: Settings
    simulator: str
    callback_url: str

    async def click(self, incident_id: str, within: float = 60.0) -> tuple[str, str] | None:
        """王工 picks On my way, 10 minutes, on the incident's card: (who acknowledged it, what the
        card says now), or None when that did not happen within `within` seconds."""
        async with aiohttp.ClientSession() as http:
            card = await self._card(http, incident_id)
            if card is None:
                return None
            click = {
                "channel": APP,
                "task_id": card["task_id"],
                "userid": USER,
                "event_key": ButtonKey("on_my_way", incident_id).encode(),
                "selected": [{"question_key": "eta", "option_ids": ["10"]}],
                "callback_url": self.callback_url,
            }
            async with http.post(f"{self.simulator}/admin/wecom-app/click", json=click) as r:
                if r.status != 200:
                    return None
            return await self._answered(http, incident_id, card["task_id"], within)

    async def _card(self, http: aiohttp.ClientSession, incident_id: str) -> dict[str, Any] | None:
        for card in await self._cards(http):
            keys = [ButtonKey.decode(b.get("key", "")) for b in card["card"].get("button_list", [])]
            if any(k is not None and k.incident_id == incident_id for k in keys):
                return card
        return None

    async def _cards(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with http.get(f"{self.simulator}/admin/wecom-app/cards?channel={APP}") as r:
            found = await r.json()
            return found if isinstance(found, list) else []

    async def _answered(
        self, http: aiohttp.ClientSession, incident_id: str, task_id: str, within: float
    ) -> tuple[str, str] | None:
        redis = redis_client(Endpoints.of(self.settings).redis)
        try:
            async with asyncio.timeout(within):
                while True:
                    view = await show_incident(redis, incident_id)
                    shown = next(c for c in await self._cards(http) if c["task_id"] == task_id)
                    line = shown["card"]["main_title"].get("desc", "")
                    if view.state == IncidentState.ACKNOWLEDGED and "王工" in line:
                        return view.acknowledged_by or "", line
                    await asyncio.sleep(0.5)
        except TimeoutError:
            return None
        finally:
            await redis.aclose()


@contextlib.asynccontextmanager
async def demo_card(settings: Settings, state_dir: Path) -> AsyncIterator[DemoCard]:
    """The simulator and the callback listener of the demo's card, stopped on the way out;
    `DemoCard.settings` are the settings the demo's worker must run with."""
    receiver = Receiver("127.0.0.1", free_port(), free_port(), state_dir / "demo-card-cert.pem")
    ours = with_card(settings, receiver.url)
    app_only = NotificationSettings(channels={APP: ours.notifications.channels[APP]})
    await receiver.start(app_only, ChannelSecrets.from_config(app_only, {}))
    endpoints = Endpoints.of(ours)
    client = await connect(endpoints.temporal, ours.temporal.namespace, temporal=ours.temporal)
    try:
        async with listening(ours, client, endpoints, 0, "card-clicks-demo") as (runner, _):
            host, port = runner.addresses[0][:2]
            yield DemoCard(ours, receiver.url, f"http://{host}:{port}/callbacks/wecom/{APP}")
    finally:
        await receiver.stop()
