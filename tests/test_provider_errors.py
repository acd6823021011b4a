"""The provider classifier (`activities.providers.errors`): pure rules, then the real SDK
against the local DashScope server answering the bodies real users report."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activities.providers import errors
from activities.providers.base import LLMResponse
from activities.providers.dashscope import DashScopeClient, one_request_session
from riskflow.contracts import failures as E
from riskflow.infra.endpoints import Endpoints
from tests.conftest import DashScopeAdmin

JSON_WITH_THINKING = "Json mode response is not supported when enable_thinking is true"
ARREARAGE = "Access denied, please make sure your account is in good standing."

# (status, code, message) -> (kind, scope): the examples and members of each kind.
CASES = [
    (400, "Arrearage", ARREARAGE, E.ACCOUNT_REFUSED, "group"),
    (403, "AccessDenied.Unpurchased", "Access to model denied.", E.ACCOUNT_REFUSED, "group"),
    (429, "Throttling.AllocationQuota", "Free allocated quota exceeded.", E.RATE_LIMITED, "group"),
    (429, "Throttling.AllocationQuota", "Allocated quota exceeded", E.RATE_LIMITED, "group"),
    (429, "Throttling.RateQuota", "Requests rate limit exceeded", E.RATE_LIMITED, "key"),
    (429, "Throttling", "Requests throttling triggered.", E.RATE_LIMITED, "key"),
    (401, "InvalidApiKey", "Invalid API-key provided.", E.INVALID_KEY, "key"),
    (403, "", "", E.INVALID_KEY, "key"),
    (400, "InvalidParameter", JSON_WITH_THINKING, E.CONFIGURATION_ERROR, "request"),
    (400, "InvalidParameter", "Model not exist.", E.CONFIGURATION_ERROR, "request"),
    (404, "ModelNotFound", "The model `qwen-x` does not exist", E.CONFIGURATION_ERROR, "request"),
    (404, "", "url error, please check url!", E.CONFIGURATION_ERROR, "request"),
    (
        400,
        "DataInspectionFailed",
        "Input data may contain inappropriate content.",
        E.CONTENT_REJECTED,
        "request",
    ),
    (
        400,
        "data_inspection_failed",
        "Output data may contain inappropriate content.",
        E.CONTENT_REJECTED,
        "request",
    ),
    (
        400,
        "InvalidParameter",
        "Failed to download multimodal content",
        E.IMAGE_UNAVAILABLE,
        "request",
    ),
    (
        400,
        "InvalidParameter",
        "Download the media resource timed out during the data inspection process.",
        E.IMAGE_UNAVAILABLE,
        "request",
    ),
    (
        400,
        "InvalidParameter",
        "Range of input length should be [1, 30720]",
        E.BAD_REQUEST,
        "request",
    ),
    (418, "Teapot", "?", E.BAD_REQUEST, "request"),
    (500, "InternalError", "An internal error has occured", E.PROVIDER_ERROR, "request"),
    (0, "TimeoutError", "", E.PROVIDER_ERROR, "request"),
    (200, errors.UNEXPECTED_RESPONSE, "KeyError: 'choices'", E.PROVIDER_ERROR, "request"),
    (200, "", "", E.OK, "request"),
]


@pytest.mark.parametrize(("status", "code", "message", "kind", "scope"), CASES)
def test_answers_are_classified_by_code_and_meaning(
    status: int, code: str, message: str, kind: str, scope: str
) -> None:
    verdict = errors.classify(LLMResponse(status_code=status, code=code, message=message))
    assert (verdict.kind, verdict.scope) == (kind, scope)


def test_an_unknown_4xx_is_a_bad_request_not_content_moderation() -> None:
    verdict = errors.classify(LLMResponse(status_code=400, code="NewCode", message="new"))
    assert verdict.kind == E.BAD_REQUEST and verdict.kind not in E.NOT_AN_ATTEMPT


NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("1.5", 1.5),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("inf", 600.0),
        ("-inf", 0.0),
        ("nan", 600.0),
        ("-5", 0.0),
        ("1e308", 600.0),
        ("99999999", 600.0),
        ("soon", None),
        ("", None),
        ("Mon, 99 Foo 2026 25:61:61 GMT", None),
    ],
)
def test_retry_after_reads_seconds_and_dates_and_clamps(value: str, seconds: float | None) -> None:
    assert errors.retry_after_seconds({"retry-after": value}, 600.0, NOW) == seconds


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    seconds = errors.retry_after_seconds({"Retry-After": value}, 600.0, NOW)
    assert seconds is None or (0.0 <= seconds <= 600.0 and not math.isnan(seconds))


async def _generate(stack: Endpoints, answer: dict[str, Any], admin: DashScopeAdmin) -> LLMResponse:
    await admin.faults(rules=[{"answer": answer}])
    async with one_request_session() as session:
        client = DashScopeClient(stack.dashscope, session, timeout_seconds=5)
        return await client.generate(
            model="qwen-plus",
            messages=[{"role": "user", "content": "JSON please"}],
            api_key="sk-local-demo-1",
            vision=False,
        )


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ({"status": 400, "body": {"code": "Arrearage", "message": ARREARAGE}}, E.ACCOUNT_REFUSED),
        (
            {"status": 400, "body": {"code": "InvalidParameter", "message": JSON_WITH_THINKING}},
            E.CONFIGURATION_ERROR,
        ),
        (
            {
                "status": 429,
                "body": {"code": "Throttling.AllocationQuota", "message": "Allocated quota"},
            },
            E.RATE_LIMITED,
        ),
        ({"status": 400, "body": {"message": "an error body without a code"}}, E.BAD_REQUEST),
        ({"status": 200, "body": {"output": {}, "request_id": "r"}}, E.PROVIDER_ERROR),
        ({"status": 200, "body": {"output": {"choices": []}}}, E.PROVIDER_ERROR),
        ({"status": 502, "body": "<html>Bad Gateway</html>"}, E.PROVIDER_ERROR),
    ],
)
async def test_the_sdk_never_raises_on_odd_bodies(
    stack: Endpoints, dashscope_admin: DashScopeAdmin, answer: dict[str, Any], kind: str
) -> None:
    response = await _generate(stack, answer, dashscope_admin)
    assert errors.classify(response).kind == kind


async def test_one_generate_sends_at_most_one_request(
    stack: Endpoints, dashscope_admin: DashScopeAdmin
) -> None:
    """The SDK resends once when a connection drops before the answer; the provider may have
    counted the first, so the send slot stamped for it would be exceeded."""
    response = await _generate(stack, {"drop": True}, dashscope_admin)
    assert errors.classify(response).kind == E.PROVIDER_ERROR
    assert len(await dashscope_admin.requests()) == 1
