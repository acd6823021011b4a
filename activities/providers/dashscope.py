"""DashScope's native API: the only place the `dashscope` SDK is called.

Its own retries stay off: Temporal owns them. The SDK (2.0.x) resends a request once when the
connection drops before an answer (`dashscope.api_entities.aio_session.send_with_retry_async`),
although the provider may already have counted it; `one_request_session` refuses that second
send, so one stamped send slot is at most one request.
"""

from __future__ import annotations

import asyncio
import contextvars
from types import SimpleNamespace
from typing import Any

import aiohttp
from dashscope import AioGeneration, AioMultiModalConversation

from activities.providers.base import LLMResponse
from activities.providers.errors import UNEXPECTED_RESPONSE

_SENDS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "riskflow_dashscope_sends", default=None
)


class SecondSendRefused(RuntimeError):
    """The SDK tried to send a request a second time within one `generate` call."""


async def _count_send(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
) -> None:
    sends = _SENDS.get()
    if sends is None:
        return
    sends[0] += 1
    if sends[0] > 1:
        raise SecondSendRefused("the SDK tried to resend a request; Temporal owns retries")


def one_request_session(trust_env: bool = False) -> aiohttp.ClientSession:
    """An aiohttp session on which one `DashScopeClient.generate` sends at most one request."""
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_count_send)
    return aiohttp.ClientSession(trust_env=trust_env, trace_configs=[trace])


class DashScopeClient:
    """DashScope through its SDK, pointed at `base_url` (the real service or the local one);
    `session` should come from `one_request_session`."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout_seconds: int) -> None:
        self._base_url = base_url
        self._session = session
        self._timeout = timeout_seconds

    @property
    def timeout_seconds(self) -> float:
        """The longest one `generate` call takes, in seconds."""
        return float(self._timeout + 5)

    async def generate(
        self, *, model: str, messages: list[dict[str, Any]], api_key: str, vision: bool
    ) -> LLMResponse:
        """One request in JSON mode; every failure (HTTP, network, an SDK exception on an
        answer it cannot read) comes back as an `LLMResponse`, never as an exception."""
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
        token = _SENDS.set([0])
        try:
            response = await asyncio.wait_for(api.call(**kwargs), timeout=self.timeout_seconds)
            return _convert(response)
        except (TimeoutError, aiohttp.ClientError, SecondSendRefused) as exc:
            return LLMResponse(status_code=0, code=type(exc).__name__, message=str(exc)[:500])
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"[:500]
            return LLMResponse(status_code=0, code=UNEXPECTED_RESPONSE, message=message)
        finally:
            _SENDS.reset(token)


def _convert(response: Any) -> LLMResponse:
    status = int(response.status_code)
    text = ""
    code = str(getattr(response, "code", "") or "")
    if status == 200:
        try:
            text = _text(response.output)
        except (AttributeError, KeyError, IndexError, TypeError) as exc:
            code = UNEXPECTED_RESPONSE
            text = f"{type(exc).__name__}: {exc}"
    usage = getattr(response, "usage", None) or {}
    headers = getattr(response, "headers", None) or {}
    return LLMResponse(
        status_code=status,
        code=code,
        message=(str(getattr(response, "message", "") or "") or text)[:500],
        text="" if code == UNEXPECTED_RESPONSE else text,
        request_id=str(getattr(response, "request_id", "") or ""),
        input_tokens=int(usage.get("input_tokens", 0) or 0),
        output_tokens=int(usage.get("output_tokens", 0) or 0),
        headers={str(k): str(v) for k, v in dict(headers).items()},
    )


def _text(output: Any) -> str:
    """The assistant text of a 200 answer; raises when the body has no such text."""
    content = output["choices"][0]["message"]["content"]
    if isinstance(content, list):  # multimodal answers are a list of parts
        content = "".join(str(part.get("text", "")) for part in content)
    if not isinstance(content, str):
        raise TypeError(f"content is {type(content).__name__}")
    return content
