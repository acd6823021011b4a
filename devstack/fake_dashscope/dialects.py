"""The two APIs the local server speaks: DashScope's native generation endpoints and its
OpenAI-compatible chat completions (`/compatible-mode/v1/chat/completions`, OpenAI's shapes:
https://platform.openai.com/docs/api-reference/chat/object and its error object
`{"error": {"message", "type", "param", "code"}}`)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

# DashScope native code -> the OpenAI-shaped code DashScope's compatible mode answers with.
_COMPAT_CODES = {
    "InvalidApiKey": ("invalid_api_key", "invalid_request_error"),
    "Throttling.RateQuota": ("limit_requests", "limit_requests"),
    "Throttling.AllocationQuota": ("limit_requests", "limit_requests"),  # group: its message
    "InternalError": ("internal_error", "internal_error"),
    "DataInspectionFailed": ("data_inspection_failed", "data_inspection_failed"),
    "InvalidParameter": ("invalid_parameter_error", "invalid_request_error"),
}


@dataclass(frozen=True)
class Request:
    """What the server needs of one request, whichever API it came in by."""

    messages: list[dict[str, Any]]
    model: str
    vision: bool
    wants_json: bool


@dataclass(frozen=True)
class Dialect:
    name: str  # "dashscope" or "openai"

    def parse(self, payload: dict[str, Any], path_is_vision: bool) -> Request:
        """The request's fields; raises KeyError/TypeError when messages are missing."""
        if self.name == "openai":
            messages = payload["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages must be a list")
            fmt = payload.get("response_format") or {}
            return Request(
                messages,
                str(payload.get("model", "")),
                _has_image(messages),
                fmt.get("type") == "json_object",
            )
        messages = payload["input"]["messages"]
        fmt = (payload.get("parameters") or {}).get("response_format") or {}
        return Request(
            messages,
            str(payload.get("model", "")),
            path_is_vision,
            fmt.get("type") == "json_object",
        )

    def error(self, code: str, message: str) -> dict[str, Any]:
        """The error body for a DashScope native `code`."""
        request_id = uuid.uuid4().hex
        if self.name == "openai":
            compat, kind = _COMPAT_CODES.get(code, (code, code))
            error = {"message": message, "type": kind, "param": None, "code": compat}
            return {"error": error, "request_id": request_id}
        return {"code": code, "message": message, "request_id": request_id}

    def ok(self, content: str, prompt_tokens: int, model: str) -> dict[str, Any]:
        """A 200 chat answer with token usage (`answer.prompt_tokens`; 4 characters a token of
        the answer)."""
        completion_tokens = len(content) // 4
        if self.name == "openai":
            return {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        return {
            "output": {
                "choices": [
                    {"finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ]
            },
            "usage": {
                "input_tokens": prompt_tokens,
                "output_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "request_id": uuid.uuid4().hex,
        }


def _has_image(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") == "image_url" for part in content
        ):
            return True
    return False


DASHSCOPE = Dialect("dashscope")
OPENAI = Dialect("openai")
