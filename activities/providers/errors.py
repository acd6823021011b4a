"""Classify a provider's answer by what it means (its code and message, not only its HTTP
status) into a `riskflow.contracts.failures` kind with a scope, and raise it.

The table follows DashScope's (Alibaba Cloud Model Studio) published error codes: the common
status codes (InvalidParameter 400, Throttling / Throttling.RateQuota /
Throttling.AllocationQuota 429, InternalServerError 500;
https://help.aliyun.com/en/open-search/search-platform/developer-reference/status-code-description,
the same gateway) and the account codes (Arrearage "User is in arrears";
https://help.aliyun.com/en/model-studio/tingwu-agent-error-information-query), plus the
messages DashScope users report for JSON mode with thinking, unknown models, moderation
(DataInspectionFailed) and multimodal downloads.

OpenAI-compatible endpoints (DashScope compatible-mode, OpenAI, vLLM, Ollama) answer errors
as `{"error": {"message", "type", "code", "param"}}`; `openai_compat` hands over the `code`
(else the `type`) and message, classified by the same table: OpenAI's documented codes
(https://platform.openai.com/docs/guides/error-codes: invalid_api_key 401,
insufficient_quota 429 "You exceeded your current quota", rate_limit_exceeded 429 per
requests or tokens per minute, model_not_found 404, context_length_exceeded 400,
content_policy_violation / content_filter, invalid_image_url) and DashScope compatible-mode's
(limit_requests, limit_burst_rate, insufficient_quota, Arrearage, data_inspection_failed,
invalid_parameter_error).

Scopes: "key" (one key), "group" (every key of the key's quota group, i.e. the account; a key
without a group is its own group), "request" (this request; the key is fine).
Unknown 4xx: `BAD_REQUEST`, scope "request": the provider refused this request for a reason we
do not know, so the event fails with the provider's code and message (never silently counted as
content moderation) and the key stays in rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from temporalio.exceptions import ApplicationError

from activities.providers.base import LLMResponse
from riskflow.contracts import failures as E

UNEXPECTED_RESPONSE = "UnexpectedResponse"  # our code for an answer the SDK could not read


@dataclass(frozen=True)
class Verdict:
    """A classified answer: the failure kind and who it applies to ("key", "group", "request")."""

    kind: str
    scope: str = "request"


# Codes whose meaning does not depend on the message: code -> (kind, scope).
_CODES: dict[str, Verdict] = {
    "InvalidApiKey": Verdict(E.INVALID_KEY, "key"),
    "Arrearage": Verdict(E.ACCOUNT_REFUSED, "group"),
    "AccessDenied.Unpurchased": Verdict(E.ACCOUNT_REFUSED, "group"),
    "AllocationQuota.FreeTierOnly": Verdict(E.ACCOUNT_REFUSED, "group"),
    "DataInspectionFailed": Verdict(E.CONTENT_REJECTED),
    "data_inspection_failed": Verdict(E.CONTENT_REJECTED),
    "ModelNotFound": Verdict(E.CONFIGURATION_ERROR),
    "model_not_found": Verdict(E.CONFIGURATION_ERROR),
    "Model.AccessDenied": Verdict(E.CONFIGURATION_ERROR),
    "ModelNotSupported": Verdict(E.CONFIGURATION_ERROR),
    "Throttling.AllocationQuota": Verdict(E.RATE_LIMITED, "group"),
    # OpenAI-compatible codes
    "invalid_api_key": Verdict(E.INVALID_KEY, "key"),
    "insufficient_quota": Verdict(E.ACCOUNT_REFUSED, "group"),
    "billing_hard_limit_reached": Verdict(E.ACCOUNT_REFUSED, "group"),
    "account_deactivated": Verdict(E.ACCOUNT_REFUSED, "group"),
    "content_policy_violation": Verdict(E.CONTENT_REJECTED),
    "content_filter": Verdict(E.CONTENT_REJECTED),
    "invalid_image_url": Verdict(E.IMAGE_UNAVAILABLE),
    "image_parse_error": Verdict(E.IMAGE_UNAVAILABLE),
    "context_length_exceeded": Verdict(E.BAD_REQUEST),
    "server_error": Verdict(E.PROVIDER_ERROR),
    "InternalError": Verdict(E.PROVIDER_ERROR),
    "InternalServerError": Verdict(E.PROVIDER_ERROR),
    "SystemError": Verdict(E.PROVIDER_ERROR),
    "RequestTimeOut": Verdict(E.PROVIDER_ERROR),
    UNEXPECTED_RESPONSE: Verdict(E.PROVIDER_ERROR),
}

# Message fragments (lower case) that decide a code whose meaning is in its message.
_ACCOUNT = ("account is in good standing", "overdue", "in arrears", "free allocated quota exceeded")
_CONFIG = (
    "json mode",
    "response_format",
    "enable_thinking",
    "model not exist",
    "model not found",
    "does not exist",
    "not supported",
    "unsupported model",
    "url error",
)
_IMAGE = (
    "download multimodal",
    "download the media",
    "download image",
    "image url",
    "decode the image",
    "image format",
    "the image length and width",
)


def classify(response: LLMResponse) -> Verdict:
    """The kind and scope of a DashScope answer (`OK` for a readable 200)."""
    status, code, message = response.status_code, response.code, response.message.lower()
    if status == 200 and code in ("", "200"):
        return Verdict(E.OK)
    if status == 0 or status >= 500:
        return Verdict(E.PROVIDER_ERROR)
    if code in _CODES:
        return _CODES[code]
    if any(fragment in message for fragment in _ACCOUNT):
        return Verdict(E.ACCOUNT_REFUSED, "group")
    if status == 429 or code.startswith("Throttling") or code.startswith("limit_"):
        return _throttling(code, message)
    if code.startswith("AccessDenied") or status in (401, 403):
        return Verdict(E.INVALID_KEY, "key")
    if "inappropriate content" in message:
        return Verdict(E.CONTENT_REJECTED)
    if any(fragment in message for fragment in _IMAGE):
        return Verdict(E.IMAGE_UNAVAILABLE)
    if status == 404 or any(fragment in message for fragment in _CONFIG):
        return Verdict(E.CONFIGURATION_ERROR)
    if status in (408, 409, 425):
        return Verdict(E.PROVIDER_ERROR)
    if 400 <= status < 500:
        return Verdict(E.BAD_REQUEST)
    return Verdict(E.PROVIDER_ERROR)  # 1xx/2xx/3xx with an error code: an answer we cannot use


def _throttling(code: str, message: str) -> Verdict:
    """A 429's scope: quota allocated to the account (tokens per minute, the account's total)
    cools the whole group; a request-rate limit cools the key."""
    if "allocat" in code.lower() or "quota exceeded" in message or "account" in message:
        return Verdict(E.RATE_LIMITED, "group")
    if "tokens per min" in message or "(tpm)" in message or "organization" in message:
        return Verdict(E.RATE_LIMITED, "group")  # OpenAI: token and organisation limits
    return Verdict(E.RATE_LIMITED, "key")


def retry_after_seconds(
    headers: dict[str, str], max_seconds: float, now: datetime | None = None
) -> float | None:
    """The Retry-After header (delta-seconds or an HTTP-date) in seconds, clamped to
    [0, `max_seconds`]: inf, nan and values above the maximum become `max_seconds`, negative
    values and dates in the past become 0. None when absent or unreadable; never raises."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            return _parse_retry_after(value.strip(), max_seconds, now)
    return None


def _parse_retry_after(value: str, max_seconds: float, now: datetime | None) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or seconds > max_seconds:
        return max_seconds
    return max(0.0, seconds)


def error(kind: str, response: LLMResponse, retry_after: float | None = None) -> ApplicationError:
    """The ApplicationError of `kind` for `response`; `retry_after` in seconds."""
    message = f"{kind}: HTTP {response.status_code} {response.code} {response.message}".strip()
    return ApplicationError(
        message,
        retry_after,
        type=kind,
        non_retryable=kind in E.NON_RETRYABLE,
        next_retry_delay=timedelta(seconds=retry_after) if retry_after else None,
    )
