"""Which provider, endpoint and models each key speaks to (`api_keys.yaml`: `provider`,
`base_url`; `llm.models`: models per provider)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import httpx

from activities.providers.base import LLMClient
from activities.providers.dashscope import DashScopeClient
from activities.providers.openai_compat import OpenAICompatClient
from riskflow.config.keys import KeysConfig, Provider
from riskflow.config.llm import ProviderModels


@dataclass(frozen=True)
class Route:
    """One key's provider ("dashscope", "openai"), client, and the models to ask on it
    (None: the assessment's own model)."""

    provider: str
    client: LLMClient
    text_model: str | None = None
    vision_model: str | None = None

    def model(self, vision: bool, asked: str) -> str:
        """The model to send: the provider's configured one, else `asked`."""
        return (self.vision_model if vision else self.text_model) or asked


class KeyRoutes:
    """Key id -> `Route`; a key it does not know goes to `default`."""

    def __init__(self, routes: Mapping[str, Route], default: Route) -> None:
        self._routes = dict(routes)
        self.default = default

    def route(self, key_id: str) -> Route:
        return self._routes.get(key_id, self.default)


def compatible_mode_url(dashscope_base_url: str) -> str:
    """DashScope's OpenAI-compatible root for its native base URL: `https://host/api/v1` ->
    `https://host/compatible-mode/v1` (https://help.aliyun.com/zh/model-studio/compatibility-of-openai-with-dashscope)."""
    root = dashscope_base_url.rstrip("/").removesuffix("/api/v1")
    return f"{root}/compatible-mode/v1"


@contextlib.asynccontextmanager
async def open_routes(
    keys: KeysConfig,
    models: Mapping[Provider, ProviderModels],
    dashscope_base_url: str,
    session: aiohttp.ClientSession,
    timeout_seconds: int,
) -> AsyncIterator[KeyRoutes]:
    """One client per provider and base URL (the DashScope ones on `session`, the
    OpenAI-compatible ones on one shared HTTP client, closed on the way out)."""
    http = httpx.AsyncClient(trust_env=session.trust_env)
    clients: dict[tuple[Provider, str], LLMClient] = {}

    def client(provider: Provider, base_url: str) -> LLMClient:
        if (provider, base_url) not in clients:
            clients[provider, base_url] = (
                OpenAICompatClient(base_url, http, timeout_seconds)
                if provider == "openai"
                else DashScopeClient(base_url, session, timeout_seconds)
            )
        return clients[provider, base_url]

    def route(provider: Provider, base_url: str | None) -> Route:
        default_url = compatible_mode_url(dashscope_base_url) if provider == "openai" else None
        chosen = models.get(provider, ProviderModels())
        return Route(
            provider,
            client(provider, base_url or default_url or dashscope_base_url),
            chosen.text_model,
            chosen.vision_model,
        )

    try:
        routes = {key.key_id: route(key.provider, key.base_url) for key in keys.api_keys}
        yield KeyRoutes(routes, route("dashscope", None))
    finally:
        await http.aclose()
