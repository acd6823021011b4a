"""The OpenAI-compatible provider (`activities.providers.openai_compat`) with the real `openai`
SDK against the local server's compatible-mode route: OpenAI-shaped answers and errors are
classified into the same kinds as DashScope's, and one `generate` is one request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from activities.providers import errors
from activities.providers.base import LLMResponse
from activities.providers.dashscope import one_request_session
from activities.providers.openai_compat import OpenAICompatClient, to_openai_messages
from activities.providers.route import compatible_mode_url, open_routes
from activities.providers.verify import verify_keys
from riskflow.config.keys import KeyRing
from riskflow.config.llm import ProviderModels
from riskflow.config.settings import Settings
from riskflow.contracts import failures as E
from riskflow.infra.endpoints import Endpoints
from tests.conftest import DashScopeAdmin

QUOTA = "You exceeded your current quota, please check your plan and billing details."
TPM = (
    "Rate limit reached for qwen-plus in organization org-1 on tokens per min (TPM): "
    "Limit 30000, Used 29000, Requested 2000."
)


def _err(status: int, code: str | None, kind: str, message: str) -> dict[str, Any]:
    error = {"message": message, "type": kind, "param": None, "code": code}
    return {"status": status, "body": {"error": error}, "headers": {"Retry-After": "7"}}


@pytest.fixture
async def openai_client(stack: Endpoints) -> AsyncIterator[OpenAICompatClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield OpenAICompatClient(compatible_mode_url(stack.dashscope), http, timeout_seconds=5)


async def _generate(
    client: OpenAICompatClient, admin: DashScopeAdmin, answer: dict[str, Any] | None = None
) -> LLMResponse:
    await admin.faults(rules=[{"answer": answer}] if answer else [])
    return await client.generate(
        model="qwen-plus",
        messages=[{"role": "user", "content": "JSON please: people 1"}],
        api_key="sk-local-demo-1",
        vision=False,
    )


async def test_an_answer_is_read_with_its_usage(
    openai_client: OpenAICompatClient, dashscope_admin: DashScopeAdmin
) -> None:
    response = await _generate(openai_client, dashscope_admin)
    assert errors.classify(response).kind == E.OK
    assert '"risk_level"' in response.text and response.input_tokens > 0
    [request] = await dashscope_admin.requests()
    assert request["api"] == "openai" and request["response_format"] == {"type": "json_object"}


ARREARAGE = "Access denied, please make sure your account is in good standing."
REQUEST = "invalid_request_error"
# (HTTP status, code, type, message) -> (kind, scope): OpenAI's and DashScope compatible-mode's.
CASES = [
    ((401, "invalid_api_key", REQUEST, "Incorrect API key"), (E.INVALID_KEY, "key")),
    ((429, "insufficient_quota", "insufficient_quota", QUOTA), (E.ACCOUNT_REFUSED, "group")),
    ((429, "rate_limit_exceeded", "requests", TPM), (E.RATE_LIMITED, "group")),
    ((429, "limit_requests", "limit_requests", "requests list."), (E.RATE_LIMITED, "key")),
    ((400, "Arrearage", "Arrearage", ARREARAGE), (E.ACCOUNT_REFUSED, "group")),
    ((404, "model_not_found", REQUEST, "no model qwen-x"), (E.CONFIGURATION_ERROR, "request")),
    ((400, "context_length_exceeded", REQUEST, "max 8192 tokens"), (E.BAD_REQUEST, "request")),
    ((400, "invalid_image_url", REQUEST, "download failed"), (E.IMAGE_UNAVAILABLE, "request")),
    ((400, "data_inspection_failed", "x", "inappropriate"), (E.CONTENT_REJECTED, "request")),
    ((400, None, REQUEST, "something we have never seen"), (E.BAD_REQUEST, "request")),
    ((500, "internal_error", "internal_error", "oops"), (E.PROVIDER_ERROR, "request")),
]
ODD_BODIES = [
    {"status": 502, "body": "<html>Bad Gateway</html>"},
    {"status": 200, "body": {"id": "x", "object": "chat.completion", "choices": []}},
]


@pytest.mark.parametrize(
    ("answer", "kind", "scope"),
    [(_err(*fields), kind, scope) for fields, (kind, scope) in CASES]
    + [(body, E.PROVIDER_ERROR, "request") for body in ODD_BODIES],
)
async def test_openai_shaped_errors_are_classified_by_meaning(
    openai_client: OpenAICompatClient,
    dashscope_admin: DashScopeAdmin,
    answer: dict[str, Any],
    kind: str,
    scope: str,
) -> None:
    response = await _generate(openai_client, dashscope_admin, answer)
    verdict = errors.classify(response)
    assert (verdict.kind, verdict.scope) == (kind, scope)
    if answer["status"] == 429:
        assert errors.retry_after_seconds(response.headers, 600.0) == 7.0


@pytest.mark.parametrize("answer", [{"drop": True}, _err(429, "limit_requests", "x", "busy")])
async def test_one_generate_sends_one_request(
    openai_client: OpenAICompatClient, dashscope_admin: DashScopeAdmin, answer: dict[str, Any]
) -> None:
    """The SDK's own retries are off: Temporal owns them, and the pool stamped one send."""
    response = await _generate(openai_client, dashscope_admin, answer)
    assert errors.classify(response).kind in (E.PROVIDER_ERROR, E.RATE_LIMITED)
    assert len(await dashscope_admin.requests()) == 1


def test_dashscope_multimodal_parts_become_openai_parts() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"image": "data:image/jpeg;base64,AA=="}, {"text": "t"}]},
    ]
    assert to_openai_messages(messages) == [
        {"role": "system", "content": "s"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AA=="}},
                {"type": "text", "text": "t"},
            ],
        },
    ]


def test_compatible_mode_root_of_the_native_base_url() -> None:
    assert (
        compatible_mode_url("https://dashscope.aliyuncs.com/api/v1")
        == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    )
    assert (
        compatible_mode_url("http://127.0.0.1:9/api/v1/") == "http://127.0.0.1:9/compatible-mode/v1"
    )


async def test_keys_verify_asks_each_key_on_its_own_provider_and_models(
    settings: Settings, stack: Endpoints, dashscope_admin: DashScopeAdmin
) -> None:
    keys = settings.keys.model_copy(
        update={
            "api_keys": [
                key.model_copy(update={"provider": "openai"}) if key.key_id == "key_2" else key
                for key in settings.keys.api_keys
            ]
        }
    )
    models = {"openai": ProviderModels(vision_model="qwen-vl-max")}
    ring = KeyRing.from_config(keys, {})
    async with (
        one_request_session() as session,
        open_routes(keys, models, stack.dashscope, session, 5) as routes,
    ):
        verdicts = await verify_keys(keys, ring, routes, "qwen-plus", "qwen-vl-plus")
    assert [v.verdict for v in verdicts] == ["valid"] * 4
    sent = [(r["key_id"], r["api"], r["model"]) for r in await dashscope_admin.requests()]
    assert sent == [
        ("key_1", "dashscope", "qwen-plus"),
        ("key_1", "dashscope", "qwen-vl-plus"),
        ("key_2", "openai", "qwen-plus"),
        ("key_2", "openai", "qwen-vl-max"),
    ]
