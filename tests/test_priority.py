"""Task-queue priority from the rule's severity (`riskflow/priority.py`): the mapping, and on
the dev server (started as the local stack starts it: the priority matcher, one write
partition) a fall that the bridge starts after a backlog of lesser situations on the same
queue runs first, in both bridge modes. Stand-ins of the two workflows record the order in
which they ran; order is asserted, never elapsed time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.simulate import scene_event
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import AssessmentInput
from riskflow.contracts.events import DetectionEvent
from riskflow.contracts.incidents import IncidentFrame, IncidentStart, incident_workflow_id
from riskflow.infra.endpoints import Endpoints
from riskflow.priority import HIGHEST_PRIORITY_KEY, LOWEST_PRIORITY_KEY, priority_key
from tests.conftest import eventually
from tests.test_bridge_faults import bridge_on, handled, new_topic, sender, tuned
from workers.common.significance import assess_significance

FALL, CROWD, PERSON = 5, 2, 1  # the default rules' severities
LESSER = 12  # lesser situations started before the fall

# --- the mapping -------------------------------------------------------------------------


def test_a_fall_and_worse_come_first_each_step_below_one_key_later() -> None:
    assert [priority_key(s, life_safety_severity=FALL) for s in (10, 6, FALL)] == [1, 1, 1]
    assert priority_key(4, life_safety_severity=FALL) == 2
    assert priority_key(3, life_safety_severity=FALL) == 3  # Temporal's default key
    assert priority_key(CROWD, life_safety_severity=FALL) == 4
    assert priority_key(PERSON, life_safety_severity=FALL) == 5
    assert priority_key(0, life_safety_severity=FALL) == 5


def test_the_life_safety_threshold_moves_the_scale() -> None:
    assert priority_key(7, life_safety_severity=8) == 2
    assert priority_key(2, life_safety_severity=2) == 1
    assert priority_key(0, life_safety_severity=0) == 1


@pytest.mark.parametrize("life_safety", range(11))
def test_keys_stay_in_temporals_range_and_never_rise_with_severity(life_safety: int) -> None:
    keys = [priority_key(s, life_safety) for s in range(11)]
    assert all(HIGHEST_PRIORITY_KEY <= k <= LOWEST_PRIORITY_KEY for k in keys)
    assert keys == sorted(keys, reverse=True)
    assert keys[life_safety] == HIGHEST_PRIORITY_KEY


# --- on the dev server -------------------------------------------------------------------

RAN: list[str] = []  # cameras, in the order their stand-in workflows ran their activity


@activity.defn
async def record(camera_id: str) -> None:
    RAN.append(camera_id)


async def _record(camera_id: str) -> None:
    await workflow.execute_activity(record, camera_id, start_to_close_timeout=timedelta(minutes=1))


@workflow.defn(name="RiskAssessmentWorkflow", sandboxed=False)
class AssessmentStandIn:
    @workflow.run
    async def run(self, inp: AssessmentInput) -> None:
        await _record(inp.event.camera_id)


@workflow.defn(name="IncidentWorkflow", sandboxed=False)
class IncidentStandIn:
    @workflow.run
    async def run(self, start: IncidentStart) -> None:
        await _record(start.camera_id)

    @workflow.signal
    def frame(self, frame: IncidentFrame) -> None:
        pass


def _workflow_id(event: DetectionEvent, settings: Settings, mode: str) -> str:
    if mode == "incidents":
        return incident_workflow_id(event.camera_id, "hazard")
    situation = assess_significance(event, settings.significance)
    assert situation is not None
    return situation.workflow_id


async def _backlog(client: Client, queue: str) -> int:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        report_stats=True,
    )
    response = await client.workflow_service.describe_task_queue(request)
    return int(response.stats.approximate_backlog_count)


async def _key(client: Client, workflow_id: str) -> int:
    description = await client.get_workflow_handle(workflow_id).describe()
    return int(description.raw_description.workflow_execution_info.priority.priority_key)


@pytest.mark.parametrize(("mode", "lesser"), [("assessments", PERSON), ("incidents", CROWD)])
async def test_a_fall_started_after_a_backlog_of_lesser_situations_runs_first(
    mode: str, lesser: int, settings: Settings, stack: Endpoints, client: Client, unique: str
) -> None:
    queue = f"priority-{mode}-{unique}"
    bridged = tuned(settings, queue, mode=mode)
    topic = await new_topic(stack, settings, queue)
    now = datetime.now(UTC)
    people = 5 if lesser == CROWD else 1  # a crowd is the least rule that opens an incident
    events = [scene_event(f"{unique}-{i}", 1, now, people=people, falls=0) for i in range(LESSER)]
    fall = scene_event(f"{unique}-fall", 1, now, people=1, falls=1)
    events.append(fall)
    async with (
        sender(stack, settings) as producer,
        bridge_on(topic, bridged, client, stack, queue) as bridge,
    ):
        for event in events:  # one key, one partition: the fall is read last
            await producer.send(topic, event.model_dump_json().encode(), key=b"all")
        await handled(bridge, len(events))
    assert bridge.counts["signalled" if mode == "incidents" else "started"] == len(events)

    async def all_backlogged() -> bool:  # the starts' tasks reach matching asynchronously
        return await _backlog(client, queue) == len(events)

    await eventually(all_backlogged)
    ids = [_workflow_id(e, settings, mode) for e in events]
    assert [await _key(client, i) for i in ids] == [priority_key(lesser, FALL)] * LESSER + [1]

    RAN.clear()
    async with Worker(
        client,
        task_queue=queue,
        workflows=[IncidentStandIn if mode == "incidents" else AssessmentStandIn],
        activities=[record],
        max_concurrent_workflow_tasks=1,
        max_concurrent_activities=1,
    ):

        async def all_ran() -> bool:
            return len(RAN) == len(events)

        await eventually(all_ran, within=60)
    assert RAN[0] == fall.camera_id, RAN
