"""A worker told to stop (SIGTERM: `riskflow down`, `docker stop`, systemd) in the middle of
an LLM call lets the call finish before it exits, within temporal.graceful_shutdown_seconds."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import BinaryIO

from temporalio.client import Client

from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from tests.conftest import DashScopeAdmin, cli_env, eventually
from tests.test_workflow import make_input
from workflows.assessment import RiskAssessmentWorkflow


def _log_file(path: Path) -> BinaryIO:
    return path.open("wb")  # handed to the child process, which writes it until it exits


async def test_a_worker_stopped_mid_call_lets_the_call_finish(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
    tmp_path: Path,
) -> None:
    await dashscope_admin.faults(latency_ms=4000)  # every call is in flight for 4 s
    env = {
        **cli_env(settings),
        "RISKFLOW_TEMPORAL__TASK_QUEUE": task_queue,
        "RISKFLOW_TEMPORAL__GRACEFUL_SHUTDOWN_SECONDS": "100",
        "RISKFLOW_METRICS__ENABLED": "false",
    }
    with _log_file(tmp_path / "worker.log") as log:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "worker", "run", env=env, stdout=log, stderr=log
        )
    inp = make_input(f"drain-{unique}")
    handle = await client.start_workflow(
        RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=task_queue
    )
    try:

        async def calling() -> bool:
            return any(unique in json.dumps(r) for r in await dashscope_admin.requests())

        await eventually(calling, within=90)
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 110) == 0
        history = await handle.fetch_history()
        scheduled = {
            e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        completed = [
            scheduled[e.activity_task_completed_event_attributes.scheduled_event_id]
            for e in history.events
            if e.HasField("activity_task_completed_event_attributes")
        ]
        assert "call_llm" in completed, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await handle.terminate("test over")
