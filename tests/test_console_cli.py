"""`riskflow console run` and `riskflow console hash-password` as an operator runs them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import httpx
from argon2 import PasswordHasher

from console.auth import hash_token
from devstack.localstack.process import free_port
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from tests.conftest import cli_env

RISKFLOW = [sys.executable, "-m", "cli"]


async def test_console_run_serves_until_sigterm(settings: Settings, stack: Endpoints) -> None:
    port, metrics_port = free_port(), free_port()
    env = {
        **cli_env(settings),
        "RISKFLOW_CONSOLE_SECRET": "s" * 40,
        "RISKFLOW_METRICS__CONSOLE_PORT": str(metrics_port),
    }
    proc = await asyncio.create_subprocess_exec(
        *RISKFLOW, "console", "run", "--port", str(port),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(300):
                try:
                    health = await http.get("/api/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the console did not answer")
            assert health.json() == {"status": "ok", "redis": True}
            assert (await http.get("/api/cameras")).status_code == 401
            metrics = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert "riskflow_console_streams_dropped_total" in metrics.text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    assert f"console: http://127.0.0.1:{port}/" in out.decode()


def test_a_short_session_secret_is_refused(settings: Settings) -> None:
    env = {**cli_env(settings), "RISKFLOW_CONSOLE_SECRET": "short"}
    result = subprocess.run(
        [*RISKFLOW, "console", "run", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "RISKFLOW_CONSOLE_SECRET must be at least 32 characters" in result.stderr


def test_hash_password_prints_a_hash_that_verifies(settings: Settings) -> None:
    result = subprocess.run(
        [*RISKFLOW, "console", "hash-password"],
        input="s3cret-pass\n", env=cli_env(settings), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    digest = result.stdout.strip().splitlines()[-1]
    assert digest.startswith("$argon2id$") and "s3cret-pass" not in result.stdout
    assert PasswordHasher().verify(digest, "s3cret-pass")
    token = subprocess.run(
        [*RISKFLOW, "console", "hash-password", "--token"],
        input="tok-123\n", env=cli_env(settings), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert token.stdout.strip().splitlines()[-1] == hash_token("tok-123")
