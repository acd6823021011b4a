"""The incident's assessment runs its first attempt inline (`workflows.loop.first_attempt`: one
activity leases, calls and releases; the task and the aggregation are local activities), and
hands a first attempt that does not answer to the full loop (the child
`RiskAssessmentWorkflow`) with what it spent. Time-skipping server, real worker, Valkey and
the local DashScope server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.asyncio import Redis
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.keypool import KeyPool
from activities.llm import LLMActivities
from activities.task import PromptBook, TaskActivities
from riskflow.config.incidents import IncidentConfig
from riskflow.config.llm import AssessmentPolicy
from riskflow.config.settings import Settings
from riskflow.contracts import failures as E
from riskflow.contracts.lease import LeasedCallInput
from riskflow.infra.endpoints import Endpoints
from riskflow.names import assessment_key, camera_latest_key
from tests.conftest import DashScopeAdmin
from tests.test_incident_workflow import LADDER, QUIET_CHECK, fall, incident_worker, open_incident
from tests.test_incident_workflow import until as until_view
from tests.test_provider_faults import leases_left
from tests.test_workflow import make_input
from workers.worker.worker import worker_deps

CONFIG = IncidentConfig(escalation=LADDER, auto_resolve_after_seconds=QUIET_CHECK)


async def history_shape(handle: WorkflowHandle[Any, Any]) -> tuple[list[str], int]:
    """(activity types scheduled, child workflows started) in the incident's history, the
    messages (`notify`, each an activity beside the incident's loop) left out."""
    activities, children = [], 0
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            if name != "notify":
                activities.append(name)
        if event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            children += 1
    return activities, children


async def test_the_first_assessment_runs_inside_the_incident(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, fall(camera, 1), CONFIG)
        view = await until_view(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)
        activities, children = await history_shape(handle)
    # One activity (lease + call + release) and no child workflow for the first assessment.
    assert children == 0 and activities == ["lease_and_call_llm"]
    assert sent.keys()[0] == "L0:ops-group"  # a fall: told before the model answered
    stored = json.loads(await redis.get(assessment_key(f"{view.incident_id}-a1")))
    assert stored["status"] == "assessed" and stored["llm_attempts"] == 1
    latest = json.loads(await redis.get(camera_latest_key(camera)))
    assert latest["assessment_id"] == f"{view.incident_id}-a1"
    assert await leases_left(redis) == 0


@pytest.mark.parametrize(
    ("script", "attempts", "requests"),
    [
        # A 429 spends no attempt: the child leases again and is answered.
        (["429"], 1, 2),
        # A 5xx spends one: the child goes on counting from it (two more 5xx, then answered).
        (["500", "500", "500"], 4, 4),
    ],
)
async def test_a_first_attempt_without_an_answer_goes_to_the_full_loop_with_what_it_spent(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
    script: list[str],
    attempts: int,
    requests: int,
) -> None:
    await dashscope_admin.faults(script=[*script, {"content": ANSWER}])
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, fall(camera, 1), CONFIG)
        # The alarm does not wait for the full loop: level 0, then the assessment.
        view = await until_view(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)
        activities, children = await history_shape(handle)
    assert activities == ["lease_and_call_llm"] and children == 1
    stored = json.loads(await redis.get(assessment_key(f"{view.incident_id}-a1")))
    assert stored["status"] == "assessed" and stored["llm_attempts"] == attempts
    assert len(await dashscope_admin.requests()) == requests
    assert await leases_left(redis) == 0


ANSWER = json.dumps(
    {
        "risk_level": "high",
        "risk_score": 80,
        "summary": "a person is down",
        "hazards": ["fall"],
        "recommended_actions": ["check on them"],
    }
)


async def test_lease_and_call_releases_its_lease_on_every_exit(
    settings: Settings, stack: Endpoints, redis: Redis, dashscope_admin: DashScopeAdmin
) -> None:
    """Answered, refused (429, 5xx, an unreadable answer) and no key at all: never a lease
    left behind, and no key no call."""
    env = ActivityEnvironment()
    async with worker_deps(settings, stack) as deps:
        pool = KeyPool(deps.redis, settings.keys.scheduler)
        llm = LLMActivities(pool, deps.ring, deps.llm, deps.redis, settings.keys.scheduler)
        tasks = TaskActivities(deps.redis, settings.llm, PromptBook.of(settings))
        task = await env.run(tasks.build_task, make_input("cam-lc", policy=AssessmentPolicy()))
        call = LeasedCallInput(assessment_id="a-lc", task=task, ttl_seconds=120)
        await dashscope_admin.faults(script=["500", "malformed", "429"])
        for kind in (E.PROVIDER_ERROR, E.MALFORMED_ANSWER, E.RATE_LIMITED):
            with pytest.raises(ApplicationError) as raised:
                await env.run(llm.lease_and_call, call)
            assert raised.value.type == kind and await leases_left(redis) == 0
        for key_id in deps.ring.key_ids():
            await pool.set_disabled(key_id, "a test")
        sent = len(await dashscope_admin.requests())
        waiting = await env.run(llm.lease_and_call, call)
        assert waiting.output is None and waiting.wait.lease is None
        assert waiting.wait.retry_after_seconds == -1.0
        assert len(await dashscope_admin.requests()) == sent
        for key_id in deps.ring.key_ids():
            await pool.set_disabled(key_id, None)
        answered = await env.run(llm.lease_and_call, call)
    assert answered.output is not None and answered.key_id in deps.ring.key_ids()
    assert await leases_left(redis) == 0


async def test_the_full_loop_reacts_to_the_first_attempt_as_to_its_own(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """An unreadable first answer gets the repair prompt next (not a fresh question), and the
    repair counts: the same as when the child had made the first attempt itself."""
    await dashscope_admin.faults(script=["malformed", {"content": ANSWER}])
    camera = f"cam-{unique}"
    async with incident_worker(time_env.client, settings, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, fall(camera, 1), CONFIG)
        view = await until_view(handle, lambda v: v.steps_sent == ["L0"] and v.assessments == 1)
        activities, children = await history_shape(handle)
    assert activities == ["lease_and_call_llm"] and children == 1
    first, second = await dashscope_admin.requests()
    assert "could not be read" not in json.dumps(first)
    assert "could not be read as one risk assessment" in json.dumps(second)
    stored = json.loads(await redis.get(assessment_key(f"{view.incident_id}-a1")))
    assert stored["status"] == "assessed" and stored["llm_attempts"] == 2
    assert await leases_left(redis) == 0
