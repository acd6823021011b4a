"""DashScope's native API: the only place the `dashscope` SDK is called.

Its own retries stay off: Temporal owns them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from dashscope import AioGeneration, AioMultiModalConversation

from activities.providers.base import LLMResponse


class DashScopeClient:
    """DashScope through its SDK, pointed at `base_url` (the real service or the local one)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout_seconds: int) -> None:
        self._base_url = base_url
        self._session = session
        self._timeout = timeout_seconds

    async def generate(
        self, *, model: str, messages: list[dict[str, Any]], api_key: str, vision: bool
    ) -> LLMResponse:
        api = AioMultiModalConversation if vision else AioGeneration
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "api_key": api_key,
            "result_format": "message",
            "response_format": {"type": "json_object"},
            "base_address": self._base_url,
            "session": self._session,
            "request_timeout": self._timeout,
        }
        try:
            response = await asyncio.wait_for(api.call(**kwargs), timeout=self._timeout + 5)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return LLMResponse(status_code=0, code=type(exc).__name__, message=str(exc)[:500])
        return _convert(response)


def _convert(response: Any) -> LLMResponse:
    text = ""
    output = getattr(response, "output", None)
    if response.status_code == 200 and output is not None:
        choices = output.get("choices") or []
        if choices:
            content = choices[0]["message"].get("content", "")
            if isinstance(content, list):  # multimodal answers are a list of parts
                content = "".join(str(part.get("text", "")) for part in content)
            text = str(content)
    usage = getattr(response, "usage", None) or {}
    headers = getattr(response, "headers", None) or {}
    return LLMResponse(
        status_code=int(response.status_code),
        code=str(getattr(response, "code", "") or ""),
        message=str(getattr(response, "message", "") or "")[:500],
        text=text,
        request_id=str(getattr(response, "request_id", "") or ""),
        input_tokens=int(usage.get("input_tokens", 0) or 0),
        output_tokens=int(usage.get("output_tokens", 0) or 0),
        headers={str(k): str(v) for k, v in dict(headers).items()},
    )
