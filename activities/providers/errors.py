"""Classify a provider's answer into a `riskflow.failure_kinds` kind, and raise it."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from activities.providers.base import LLMResponse
from riskflow.failure_kinds import (
    CONTENT_REJECTED,
    INVALID_KEY,
    NON_RETRYABLE,
    OK,
    PROVIDER_ERROR,
    RATE_LIMITED,
)


def classify(response: LLMResponse) -> str:
    """The failure kind of a DashScope answer (`OK` for a 200)."""
    status, code = response.status_code, response.code
    if status == 200:
        return OK
    if status == 429 or code.startswith("Throttling"):
        return RATE_LIMITED
    if status in (401, 403) or code in ("InvalidApiKey", "AccessDenied"):
        return INVALID_KEY
    if 400 <= status < 500:
        return CONTENT_REJECTED
    return PROVIDER_ERROR


def retry_after_seconds(headers: dict[str, str]) -> float | None:
    """The Retry-After header in seconds, or None when absent or unreadable."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def error(kind: str, response: LLMResponse, retry_after: float | None = None) -> ApplicationError:
    """The ApplicationError of `kind` for `response`; `retry_after` in seconds."""
    message = f"{kind}: HTTP {response.status_code} {response.code} {response.message}".strip()
    return ApplicationError(
        message,
        retry_after,
        type=kind,
        non_retryable=kind in NON_RETRYABLE,
        next_retry_delay=timedelta(seconds=retry_after) if retry_after else None,
    )
