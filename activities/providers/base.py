"""What every LLM provider answers with, and the client shape the activities depend on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class LLMResponse:
    """One provider answer: HTTP status (0 for no answer), provider code and message, the
    reply text, token counts and response headers."""

    status_code: int
    code: str = ""
    message: str = ""
    text: str = ""
    request_id: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    headers: dict[str, str] = field(default_factory=dict)


class LLMClient(Protocol):
    """Sends one chat request with `api_key`; never raises for an HTTP or network error,
    which comes back as an `LLMResponse` (status 0 when there was no answer).
    `timeout_seconds`: the longest one `generate` call can take."""

    @property
    def timeout_seconds(self) -> float: ...

    async def generate(
        self, *, model: str, messages: list[dict[str, Any]], api_key: str, vision: bool
    ) -> LLMResponse: ...
