"""OpenAI-compatible chat completions: the only place the `openai` SDK is called.

One client serves DashScope's compatible mode (`.../compatible-mode/v1`), vLLM and Ollama
(`http://host:port/v1`), OpenAI and other services that speak the same API
(https://platform.openai.com/docs/api-reference/chat/create). The SDK's own retries are off
(`max_retries=0`): Temporal owns them, so one `generate` is at most one request.

Messages arrive in DashScope's shape (a multimodal user content is a list of `{"image": url}`
and `{"text": ...}` parts) and are sent in OpenAI's (`{"type": "image_url", "image_url":
{"url": ...}}` and `{"type": "text", "text": ...}`).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httpx
import openai

from activities.providers.base import LLMResponse
from activities.providers.errors import UNEXPECTED_RESPONSE


class OpenAICompatClient:
    """An OpenAI-compatible endpoint at `base_url` (the API root, ending in `/v1` for most);
    `http_client` is shared by every key (the secret is given per request)."""

    def __init__(self, base_url: str, http_client: httpx.AsyncClient, timeout_seconds: int) -> None:
        self._timeout = timeout_seconds
        self._client = openai.AsyncOpenAI(
            api_key="unset",  # replaced per request by the leased key's secret
            base_url=base_url,
            max_retries=0,
            timeout=float(timeout_seconds),
            http_client=http_client,
        )

    @property
    def timeout_seconds(self) -> float:
        """The longest one `generate` call takes, in seconds."""
        return float(self._timeout + 5)

    async def generate(
        self, *, model: str, messages: list[dict[str, Any]], api_key: str, vision: bool
    ) -> LLMResponse:
        """One request in JSON mode (`response_format: json_object`); every failure (HTTP,
        network, an answer it cannot read) comes back as an `LLMResponse`, never raised."""
        client = self._client.with_options(api_key=api_key)
        try:
            raw = await asyncio.wait_for(
                client.chat.completions.with_raw_response.create(
                    model=model,
                    messages=cast(Any, to_openai_messages(messages)),
                    response_format={"type": "json_object"},
                ),
                timeout=self.timeout_seconds,
            )
            return _convert(raw.parse(), dict(raw.headers))  # legacy response: parse is sync
        except openai.APIStatusError as exc:
            return _status_error(exc)
        except (TimeoutError, openai.APIConnectionError) as exc:  # APITimeoutError included
            return LLMResponse(status_code=0, code=type(exc).__name__, message=str(exc)[:500])
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"[:500]
            return LLMResponse(status_code=0, code=UNEXPECTED_RESPONSE, message=message)


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DashScope-shaped messages in OpenAI's shape (plain string contents stay as they are)."""
    converted = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [_part(part) for part in content]
        converted.append({**message, "content": content})
    return converted


def _part(part: dict[str, Any]) -> dict[str, Any]:
    if "image" in part:
        return {"type": "image_url", "image_url": {"url": str(part["image"])}}
    if "text" in part and "type" not in part:
        return {"type": "text", "text": str(part["text"])}
    return part


def _convert(completion: Any, headers: dict[str, str]) -> LLMResponse:
    """A 200 answer; a body without an assistant text is `UNEXPECTED_RESPONSE`."""
    usage = getattr(completion, "usage", None)
    request_id = headers.get("x-request-id", "") or str(getattr(completion, "id", "") or "")
    common: dict[str, Any] = {
        "request_id": request_id,
        "input_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "output_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        "headers": headers,
    }
    try:
        content = completion.choices[0].message.content
    except (AttributeError, IndexError, TypeError) as exc:
        content, problem = None, f"{type(exc).__name__}: {exc}"
    else:
        problem = f"content is {type(content).__name__}"
    if not isinstance(content, str):
        return LLMResponse(status_code=200, code=UNEXPECTED_RESPONSE, message=problem, **common)
    return LLMResponse(status_code=200, text=content, message=content[:500], **common)


def _status_error(exc: openai.APIStatusError) -> LLMResponse:
    """An HTTP error answer. OpenAI's shape is `{"error": {"message", "type", "code",
    "param"}}` (the SDK hands over the inner object as `body`); the provider's code is its
    `code`, else its `type`."""
    body = exc.body if isinstance(exc.body, dict) else {}
    code = body.get("code") or body.get("type") or ""
    message = body.get("message") or exc.message
    headers = dict(exc.response.headers)
    return LLMResponse(
        status_code=exc.status_code,
        code=str(code),
        message=str(message)[:500],
        request_id=headers.get("x-request-id", "") or str(exc.request_id or ""),
        headers=headers,
    )
