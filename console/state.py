"""What every request of one console process shares: settings, Redis, the live poller, the
templates, and the Temporal client (connected on the first incident action, so the pages work
while Temporal is down)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.templating import Jinja2Templates
from temporalio.client import Client

from console.data import parse_assessment
from console.live import LiveTiles
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient
from riskflow.names import camera_latest_key
from workers.common.client import connect


@dataclass
class ConsoleState:
    settings: Settings
    redis: RedisClient
    live: LiveTiles
    templates: Jinja2Templates
    _client: Client | None = None
    _connecting: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def latest(self, camera_id: str) -> Assessment | None:
        key = camera_latest_key(camera_id)
        return parse_assessment(await self.redis.get(key), key)

    async def temporal(self) -> Client:
        """The Temporal client, connected once (RuntimeError when Temporal is unreachable;
        the next call tries again)."""
        async with self._connecting:
            if self._client is None:
                temporal = self.settings.temporal
                address = Endpoints.of(self.settings).temporal
                self._client = await connect(address, temporal.namespace, None, temporal)
            return self._client


def state_of(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state
