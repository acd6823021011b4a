"""What every request of one console process shares: settings, Redis, the live poller, the
authenticator and the templates."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.templating import Jinja2Templates

from console.data import parse_assessment
from console.live import LiveTiles
from riskflow.models import Assessment
from riskflow.names import camera_latest_key
from riskflow.redis_client import RedisClient
from riskflow.settings import Settings


@dataclass
class ConsoleState:
    settings: Settings
    redis: RedisClient
    live: LiveTiles
    templates: Jinja2Templates

    async def latest(self, camera_id: str) -> Assessment | None:
        key = camera_latest_key(camera_id)
        return parse_assessment(await self.redis.get(key), key)


def state_of(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state
