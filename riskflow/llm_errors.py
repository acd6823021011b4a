"""How an LLM answer is classified, and the ApplicationError types the workflow reacts to."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.exceptions import ApplicationError

if TYPE_CHECKING:
    from activities.dashscope_client import LLMResponse

OK = "Ok"
RATE_LIMITED = "RateLimited"  # 429 Throttling.*: wait Retry-After, then another lease
PROVIDER_ERROR = "ProviderError"  # 5xx, timeouts, connection errors: back off, retry
INVALID_KEY = "InvalidKey"  # 401/403: the key is disabled, another key is tried
CONTENT_REJECTED = "ContentRejected"  # 400: retrying the same input cannot help
MALFORMED_ANSWER = "MalformedAnswer"  # not the JSON asked for: repair prompt, bounded
KEY_BUSY = "KeyBusy"  # the leased key had no send slot in time: lease again
LEASE_LOST = "LeaseLost"  # the lease expired or its key was disabled: lease again
KEY_UNAVAILABLE = "KeyUnavailable"  # this worker has no secret for the key: lease again

NON_RETRYABLE = (CONTENT_REJECTED, MALFORMED_ANSWER)


def classify(response: LLMResponse) -> str:
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
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def error(kind: str, response: LLMResponse, retry_after: float | None = None) -> ApplicationError:
    message = f"{kind}: HTTP {response.status_code} {response.code} {response.message}".strip()
    return ApplicationError(
        message,
        retry_after,
        type=kind,
        non_retryable=kind in NON_RETRYABLE,
        next_retry_delay=timedelta(seconds=retry_after) if retry_after else None,
    )
