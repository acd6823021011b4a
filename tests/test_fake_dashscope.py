"""The local DashScope server answers exact bodies, headers and codes, and records requests."""

from __future__ import annotations

import json

import aiohttp

from riskflow.infra.endpoints import Endpoints
from tests.conftest import DashScopeAdmin

ARREARAGE = {
    "code": "Arrearage",
    "message": "Access denied, please make sure your account is in good standing.",
    "request_id": "r-1",
}


async def _post(stack: Endpoints, secret: str, text: str) -> tuple[int, dict[str, str], str]:
    url = stack.dashscope + "/services/aigc/text-generation/generation"
    body = {"model": "qwen-plus", "input": {"messages": [{"role": "user", "content": text}]}}
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        return response.status, dict(response.headers), await response.text()


async def test_rules_and_script_answer_exactly(
    stack: Endpoints, dashscope_admin: DashScopeAdmin
) -> None:
    await dashscope_admin.faults(
        rules=[
            {"key_id": "key_1", "answer": {"status": 400, "body": ARREARAGE}},
            {"contains": "twice", "times": 1, "answer": {"status": 200, "body": "not json"}},
        ],
        script=[{"content": "```JSON\n{}\n```", "headers": {"X-Test": "1"}}, "500"],
    )
    status, _, text = await _post(stack, "sk-local-demo-1", "hello JSON")
    assert (status, json.loads(text)) == (400, ARREARAGE)
    status, _, text = await _post(stack, "sk-local-demo-2", "twice JSON")
    assert (status, text) == (200, "not json")
    status, headers, text = await _post(stack, "sk-local-demo-2", "twice JSON")  # rule used up
    assert status == 200 and headers["X-Test"] == "1" and "```JSON" in text
    status, _, _ = await _post(stack, "sk-local-demo-2", "JSON")
    assert status == 500
    recorded = await dashscope_admin.requests()
    assert [r["key_id"] for r in recorded] == ["key_1", "key_2", "key_2", "key_2"]
    assert recorded[1]["input"]["messages"][0]["content"] == "twice JSON"
