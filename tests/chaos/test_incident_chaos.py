"""An incident escalating in real time while its worker is killed with -9 again and again:
every escalation step is notified exactly once (the recorder in `incident_worker` counts
attempts and messages), none is lost. Prints a `CHAOS incident_worker_kill_9: {...}` line."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from devstack.simulate import scene_event
from riskflow.config.incidents import EscalationStep, IncidentConfig
from riskflow.config.llm import AssessmentPolicy
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import IncidentState, incident_workflow_id
from riskflow.infra.endpoints import Endpoints
from riskflow.names import assessment_key
from tests.chaos.harness import Cluster, scale
from tests.conftest import DashScopeAdmin, eventually
from tests.test_provider_faults import leases_left
from workers.bridge.incident_starts import IncidentStarts
from workers.common.significance import assess_significance
from workflows.incident import IncidentWorkflow

# A message in flight when its worker is killed is retried after its attempt's timeout
# (workflows/incident_state.py SEND_ATTEMPT_SECONDS): a few kills can add minutes.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

LEVELS, STEP_SECONDS, REPEATS = 5, 3.0, 5
# One configured channel per level (config/riskflow.yaml: a ladder may only name configured
# channels); the worker's notify activity is the recorder of tests/chaos/incident_worker.py.
CHANNELS = ["ops-group", "shift-lead", "site-manager", "ticketing", "mail"]


async def test_incident_worker_kill_9_sends_no_duplicate(
    settings: Settings,
    stack: Endpoints,
    client: Client,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    tmp_path: Path,
    unique: str,
) -> None:
    config = IncidentConfig(
        escalation=[
            EscalationStep(after_seconds=i * STEP_SECONDS, channels=[CHANNELS[i]])
            for i in range(LEVELS)
        ],
        repeat_seconds=STEP_SECONDS,
        max_repeats=REPEATS,
        auto_resolve_after_seconds=3600,
    )
    prefix = f"chaosnotify:{unique}"
    cluster = Cluster(settings, tmp_path, unique, RISKFLOW_INCIDENTS=config.model_dump_json())
    incident_settings = settings.model_copy(
        update={
            "incidents": config,
            "temporal": settings.temporal.model_copy(update={"task_queue": f"chaos-{unique}"}),
        }
    )
    workers: list[asyncio.subprocess.Process] = []

    async def spawn() -> None:
        log = (tmp_path / f"worker-{len(workers)}.log").open("wb")
        workers.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.chaos.incident_worker",
                prefix,
                env=cluster.env,
                stdout=log,
                stderr=log,
            )
        )

    kills = scale(5, 20)
    camera = f"chaos-{unique}"
    event = scene_event(camera, 1, datetime.now(UTC), people=2, falls=1)
    situation = assess_significance(event, settings.significance)
    assert situation is not None
    await spawn()
    try:
        starts = IncidentStarts(client, incident_settings, AssessmentPolicy())
        await starts.signal_with_start(event, situation)
        handle = client.get_workflow_handle(incident_workflow_id(camera, "hazard"))
        total = LEVELS + REPEATS
        escalation_seconds = (LEVELS - 1 + REPEATS) * STEP_SECONDS
        for _ in range(kills):
            await asyncio.sleep(escalation_seconds / (kills + 1))
            workers[-1].send_signal(signal.SIGKILL)
            await workers[-1].wait()
            await spawn()

        async def escalated() -> bool:
            view = await handle.query(IncidentWorkflow.incident)
            return view is not None and len(view.steps_sent) == total

        await eventually(escalated, within=600)
        view = await handle.query(IncidentWorkflow.incident)

        async def delivered() -> bool:  # a send cut by a kill is retried after its timeout
            sent = {k.decode().split(":")[-2] for k in await redis.lrange(f"{prefix}:sent", 0, -1)}
            done = sent | {
                n
                for e in view.timeline
                if e.detail.startswith("caught up: ")
                for n in e.detail[11:].removesuffix(" not sent").split(", ")
            }
            return done >= set(view.steps_sent)

        await eventually(delivered, within=600)
        await handle.terminate("test over")
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 60)
    every = [k.decode() for k in await redis.lrange(f"{prefix}:sent", 0, -1)]
    # A fall is told before the model: its assessment follows as `a1` to the levels reached
    # by then (one each), beside the ladder's steps.
    updates = [k for k in every if k.split(":")[-2] == "a1"]
    sent = [k for k in every if k not in updates]
    attempts = await redis.llen(f"{prefix}:attempts")
    expected = [f"{view.incident_id}:L{i}:{CHANNELS[i]}" for i in range(LEVELS)] + [
        f"{view.incident_id}:L{LEVELS - 1}r{r}:{CHANNELS[-1]}" for r in range(1, REPEATS + 1)
    ]
    figures = {
        "kills": kills,
        "steps": total,
        "sent": len(sent),
        "attempts": attempts,
        "duplicates": len(every) - len(set(every)),
        "assessment_updates": len(updates),
    }
    print(f"CHAOS incident_worker_kill_9: {json.dumps(figures)}")
    assert view.state == IncidentState.NOTIFIED
    # Each step once: none doubled, none lost. A step that fell due while no worker ran is
    # not sent late in a burst: it is recorded as caught up, and the last step due then
    # carries the news (the ladder says once what was missed).
    assert len(every) == len(set(every)) and set(sent) <= set(expected)
    assert {k.rsplit(":", 1)[1] for k in updates} <= set(CHANNELS)
    assert sorted(view.steps_sent) == sorted(e.split(":")[-2] for e in expected)
    caught: set[str] = set()
    for entry in view.timeline:
        if entry.detail.startswith("caught up: "):
            names = entry.detail.removeprefix("caught up: ").removesuffix(" not sent")
            caught |= set(names.split(", "))
    told = {key.split(":")[-2] for key in sent}
    assert told | caught == set(view.steps_sent) and not told & caught
    assert expected[-1] in sent  # the last step went


async def test_a_worker_killed_mid_first_assessment_notifies_once(
    settings: Settings,
    stack: Endpoints,
    client: Client,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    tmp_path: Path,
    unique: str,
) -> None:
    """kill -9 while the incident's inline first attempt waits for the provider (its lease
    held inside `lease_and_call_llm`): level 0 is told without waiting for it, the attempt
    times out, the full loop assesses, the assessment follows as one update, each message
    once, and the killed worker's lease is the only one left (to its TTL)."""
    await dashscope_admin.faults(script=["hang"], hang_seconds=30)
    config = IncidentConfig(
        escalation=[EscalationStep(after_seconds=0, channels=[CHANNELS[0]])],
        auto_resolve_after_seconds=3600,
    )
    prefix = f"chaosfirst:{unique}"
    cluster = Cluster(settings, tmp_path, unique, RISKFLOW_INCIDENTS=config.model_dump_json())
    incident_settings = settings.model_copy(
        update={
            "incidents": config,
            "temporal": settings.temporal.model_copy(update={"task_queue": f"chaos-{unique}"}),
        }
    )
    workers: list[asyncio.subprocess.Process] = []

    async def spawn() -> None:
        log = (tmp_path / f"worker-{len(workers)}.log").open("wb")
        workers.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.chaos.incident_worker",
                prefix,
                env=cluster.env,
                stdout=log,
                stderr=log,
            )
        )

    camera = f"chaos-{unique}"
    event = scene_event(camera, 1, datetime.now(UTC), people=2, falls=1)
    situation = assess_significance(event, settings.significance)
    assert situation is not None
    await spawn()
    try:
        starts = IncidentStarts(client, incident_settings, AssessmentPolicy(llm_timeout_seconds=8))
        await starts.signal_with_start(event, situation)
        handle = client.get_workflow_handle(incident_workflow_id(camera, "hazard"))

        async def calling() -> bool:
            return len(await dashscope_admin.requests()) == 1

        await eventually(calling, within=60)
        workers[-1].send_signal(signal.SIGKILL)
        await workers[-1].wait()
        await spawn()

        async def notified() -> bool:
            view = await handle.query(IncidentWorkflow.incident)
            sent = await redis.llen(f"{prefix}:sent")
            return view is not None and view.steps_sent == ["L0"] and sent >= 2

        await eventually(notified, within=120)
        view = await handle.query(IncidentWorkflow.incident)
        await handle.terminate("test over")
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 60)
    sent = [k.decode() for k in await redis.lrange(f"{prefix}:sent", 0, -1)]
    assert sent == [f"{view.incident_id}:L0:{CHANNELS[0]}", f"{view.incident_id}:a1:{CHANNELS[0]}"]
    assert view.assessments == 1 and view.severity != "none"
    stored = json.loads(await redis.get(assessment_key(f"{view.incident_id}-a1")))
    assert stored["status"] == "assessed" and stored["llm_attempts"] == 2
    assert len(await dashscope_admin.requests()) == 2
    # The killed call's lease (its record and its concurrency slot) and no other, to its TTL.
    assert await leases_left(redis) <= 2
