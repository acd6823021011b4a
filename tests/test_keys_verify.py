"""`riskflow keys verify` as an operator runs it (a subprocess) against the local DashScope
server: every configured model is checked with the request the worker sends."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from tests.conftest import DashScopeAdmin, cli_env

JSON_MODE = {
    "code": "InvalidParameter",
    "message": "Json mode response is not supported when enable_thinking is true",
}


async def keys_verify(settings: Settings) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "keys",
        "verify",
        env={**cli_env(settings), "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_a_model_that_refuses_json_mode_fails_verify_naming_model_and_reason(
    settings: Settings, stack: Endpoints, dashscope_admin: DashScopeAdmin
) -> None:
    vision = settings.llm.vision_model
    await dashscope_admin.faults(
        rules=[{"model": vision, "answer": {"status": 400, "body": JSON_MODE}}]
    )
    code, out = await keys_verify(settings)
    assert code == 1, out
    failures = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 2 and all(vision in line for line in failures), out
    assert all("ConfigurationError" in line and "enable_thinking" in line for line in failures)
    assert "sk-local-demo" not in out
    sent = await dashscope_admin.requests()
    assert {(r["model"], r["endpoint"]) for r in sent} == {
        (settings.llm.text_model, "text"),
        (vision, "vision"),
    }
    assert all(r["parameters"]["response_format"] == {"type": "json_object"} for r in sent)


async def test_verify_passes_when_every_model_answers(
    settings: Settings, stack: Endpoints, dashscope_admin: DashScopeAdmin
) -> None:
    code, out = await keys_verify(settings)
    assert code == 0 and out.count("valid") == 4, out
