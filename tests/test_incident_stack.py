"""Incidents on the real local stack, through the bridge (`bridge.mode: incidents`): a
continuous scene is one incident across many debounce windows, redelivered old frames never
reopen a closed incident, and the operator CLI acts on it. Each bridge reads a topic of its own;
notifications are recorded by the tests' stand-in `notify` activity."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from redis.asyncio import Redis
from temporalio.client import Client

from devstack.simulate import scene_event
from riskflow.config.llm import AssessmentPolicy
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import IncidentState, OperatorAction, incident_workflow_id
from riskflow.errors import IncidentActionRefused, IncidentNotFound
from riskflow.infra.endpoints import Endpoints
from riskflow.names import INCIDENT_TOPIC, incident_key
from tests.conftest import cli_env, eventually, read_topic
from tests.test_bridge_faults import bridge_on, handled, new_topic, sender, tuned
from tests.test_incident_workflow import incident_worker
from workers.bridge.incident_starts import IncidentStarts
from workers.common.significance import assess_significance
from workers.incidents.client import act, list_incidents, show_incident
from workflows.incident import IncidentWorkflow

FPS = 2


async def test_a_continuous_fall_scene_is_one_incident_and_old_frames_never_reopen_it(
    settings: Settings, stack: Endpoints, client: Client, redis: Redis, unique: str
) -> None:
    incidents = tuned(settings, f"inc-{unique}", mode="incidents")
    topic = await new_topic(stack, settings, f"inc-{unique}")
    camera = f"fall-{unique}"
    # Three minutes of a person down at 2 fps: six 30 s debounce windows, 360 frames.
    start = datetime.now(UTC) - timedelta(minutes=3)
    events = [
        scene_event(camera, n, start + timedelta(seconds=n / FPS), people=2, falls=1)
        for n in range(3 * 60 * FPS)
    ]
    workflow_id = incident_workflow_id(camera, "hazard")
    async with (
        incident_worker(client, incidents, stack, incidents.temporal.task_queue) as sent,
        sender(stack, settings) as producer,
        bridge_on(topic, incidents, client, stack, f"inc-{unique}") as bridge,
    ):
        for event in events:
            await producer.send(topic, event.model_dump_json().encode(), key=camera.encode())
        await producer.send(topic, events[5].model_dump_json().encode(), key=camera.encode())
        await handled(bridge, len(events) + 1, within=120)
        handle = client.get_workflow_handle(workflow_id)

        # At most one frame per second of capture time goes to the incident (at 2 fps every
        # other one: 180 of 360); the redelivered frame 5 was left out the first time and is
        # older than the last one signalled, so it goes (and is new to the incident).
        assert (bridge.counts["signalled"], bridge.counts["coalesced"]) == (181, 180)

        async def all_seen() -> bool:
            view = await handle.query(IncidentWorkflow.incident)
            return (
                view is not None
                and view.frames_seen == 181
                and view.state == IncidentState.NOTIFIED
                and any(r.kind == "assessed" for r in sent.requests)
            )

        await eventually(all_seen, within=60)
        view = await handle.query(IncidentWorkflow.incident)
        assert view is not None and view.state == IncidentState.NOTIFIED
        runs = [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
        assert len(runs) == 1
        # One step, one idempotency key. The notify step is a local activity: a workflow task
        # that times out on a loaded machine runs it again with the same key, and the real
        # channel activity answers `already_sent` for it (tests/test_notify.py); this
        # recording stand-in only counts calls.
        keys = {r.idempotency_key for r in sent.requests}
        # The alarm, then its assessment as an update (a fall is told before the model).
        assert keys == {f"{view.incident_id}:L0:ops-group", f"{view.incident_id}:a1:ops-group"}
        assert view.assessments == 1
        assert (
            REGISTRY.get_sample_value("riskflow_incidents_open", {"severity": "high"}) or 0
        ) >= 1

        # The operator resolves it; the same scene redelivered opens nothing.
        state = await act(client, redis, view.incident_id, "resolve", OperatorAction(by="ops"))
        assert state == IncidentState.RESOLVED
        await handle.result()
        for event in events[::60]:
            await producer.send(topic, event.model_dump_json().encode(), key=camera.encode())
        await handled(bridge, len(events) + 1 + len(events[::60]), within=60)

        async def ignored() -> bool:
            latest = [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
            return len(latest) > 1 and all(w.status is not None and w.close_time for w in latest)

        await eventually(ignored, within=30)
        assert await list_incidents(redis, camera=camera) == []
        # Three messages, three keys: L0, its assessment, and the resolution to ops-group
        # (re-run calls repeat a key); nothing for the redelivered scene.
        keys = {r.idempotency_key.split(":", 1)[1] for r in sent.requests}
        assert keys == {"L0:ops-group", "a1:ops-group", "resolved:ops-group"}
        try:
            await act(client, redis, view.incident_id, "ack", OperatorAction(by="late"))
        except IncidentActionRefused as refused:
            assert "resolved" in str(refused)
        else:
            raise AssertionError("acking a resolved incident was accepted")
        try:
            await show_incident(redis, "incident-nope-hazard-1")
        except IncidentNotFound:
            pass
        else:
            raise AssertionError("an unknown incident was found")

        # A frame captured after the close is a new incident.
        later = scene_event(camera, 10_000, datetime.now(UTC), people=2, falls=1)
        await producer.send(topic, later.model_dump_json().encode(), key=camera.encode())

        async def reopened() -> bool:
            return len(await list_incidents(redis, camera=camera)) == 1

        await eventually(reopened, within=30)
        (second,) = await list_incidents(redis, camera=camera)
        await client.get_workflow_handle(workflow_id).terminate("test over")
    assert second.incident_id != view.incident_id
    stored = json.loads(await redis.get(incident_key(view.incident_id)))
    assert stored["state"] == "resolved" and stored["closed_by"] == "ops"
    kinds = await lifecycle(stack, view.incident_id, last="resolved")
    assert kinds == ["opened", "notified", "assessed", "resolved"]  # a fall: told first


async def lifecycle(stack: Endpoints, incident_id: str, last: str) -> list[str]:
    """The incident's event kinds on `incident-events` as a consumer sees them: in order,
    deduplicated on `event_id` (a record activity re-run on a loaded machine publishes its
    events again), read until the `last` kind arrives."""

    def ours(d: dict[str, object]) -> bool:
        return d.get("incident_id") == incident_id

    published = await read_topic(stack.kafka, INCIDENT_TOPIC, ours, 1)
    while not any(p["kind"] == last for p in published):
        more = await read_topic(stack.kafka, INCIDENT_TOPIC, ours, len(published) + 1)
        if len(more) <= len(published):
            break
        published = more
    first: dict[str, str] = {}
    for p in published:
        first.setdefault(p["event_id"], p["kind"])
    return list(first.values())


async def cli(settings: Settings, *args: str) -> tuple[int, str]:
    """`riskflow incidents ARGS` in a process of its own: exit code and output."""
    # An 80-column terminal, where a trial saw the id column cut.
    env = {**cli_env(settings), "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "COLUMNS": "80"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "incidents",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_cli_lists_shows_acts_and_refuses_clearly(
    settings: Settings, stack: Endpoints, client: Client, redis: Redis, unique: str
) -> None:
    code, out = await cli(settings, "ack", f"incident-{unique}-hazard-1", "--by", "li")
    assert code == 2 and "no incident" in out and "Traceback" not in out
    code, out = await cli(settings, "list", "--camera", f"none-{unique}")
    assert code == 0 and "0 incident(s)" in out
    code, out = await cli(settings, "list", "--state", "bogus")
    assert code != 0 and "bogus" in out
    code, out = await cli(settings, "ack", f"incident-{unique}-hazard-1", "--by", "")
    assert code != 0 and "by" in out and "Traceback" not in out

    incidents = tuned(settings, f"cli-{unique}", mode="incidents")
    camera = f"cli-{unique}"
    event = scene_event(camera, 1, datetime.now(UTC), people=2, falls=1)
    situation = assess_significance(event, settings.significance)
    assert situation is not None
    async with incident_worker(client, incidents, stack, incidents.temporal.task_queue):
        await IncidentStarts(client, incidents, AssessmentPolicy()).signal_with_start(
            event, situation
        )

        async def listed() -> bool:
            views = await list_incidents(redis, camera=camera)
            return len(views) == 1 and views[0].state == IncidentState.NOTIFIED

        await eventually(listed, within=30)
        (view,) = await list_incidents(redis, camera=camera)
        code, out = await cli(settings, "list", "--camera", camera)
        assert code == 0 and "1 incident(s)" in out
        assert view.incident_id in out, out  # whole, to be copied into ack/resolve/dismiss
        code, out = await cli(settings, "list", "--camera", camera, "--ids")
        assert (code, out.split()) == (0, [view.incident_id])
        code, out = await cli(settings, "ack", view.incident_id, "--by", "li", "--eta", "0")
        assert code != 0 and "eta_minutes" in out and "Traceback" not in out, out
        code, out = await cli(settings, "ack", view.incident_id, "--by", "wang.fang", "--eta", "9")
        assert code == 0 and "acknowledged" in out, out
        acked = await show_incident(redis, view.incident_id)
        assert acked.follow_up_at is not None and acked.acknowledged_at is not None
        assert acked.follow_up_at - acked.acknowledged_at == timedelta(minutes=9)
        code, out = await cli(settings, "ack", view.incident_id, "--by", "wang.fang")
        assert code == 2 and "it is acknowledged" in out, out
        code, out = await cli(settings, "dismiss", view.incident_id, "--reason", "a mannequin")
        assert code == 0 and "dismissed" in out, out
        code, out = await cli(settings, "show", view.incident_id)
        assert code == 0 and "wang.fang" in out and "a mannequin" in out, out
        code, out = await cli(settings, "list", "--camera", camera, "--state", "dismissed")
        assert code == 0 and "1 incident(s)" in out
        await client.get_workflow_handle(view.workflow_id).result()


async def test_the_bridge_passes_clear_frames_and_the_incident_resolves_itself(
    settings: Settings, stack: Endpoints, client: Client, redis: Redis, unique: str
) -> None:
    quick = settings.incidents.model_copy(update={"auto_resolve_after_seconds": 3.0})
    incidents = tuned(settings, f"clr-{unique}", mode="incidents", clear_signal_seconds=0.2)
    incidents = incidents.model_copy(update={"incidents": quick})
    topic = await new_topic(stack, settings, f"clr-{unique}")
    camera, calm = f"clr-{unique}", f"calm-{unique}"
    async with (
        incident_worker(client, incidents, stack, incidents.temporal.task_queue),
        sender(stack, settings) as producer,
        bridge_on(topic, incidents, client, stack, f"clr-{unique}") as bridge,
    ):
        down = scene_event(camera, 1, datetime.now(UTC), people=2, falls=1)
        await producer.send(topic, down.model_dump_json().encode(), key=camera.encode())
        # A camera with nobody down has no incident; its frames go nowhere.
        nobody = scene_event(calm, 1, datetime.now(UTC), people=1, falls=0)
        await producer.send(topic, nobody.model_dump_json().encode(), key=calm.encode())
        await handled(bridge, 2)
        handle = client.get_workflow_handle(incident_workflow_id(camera, "hazard"))
        frame_id = 2

        async def resolved() -> bool:
            nonlocal frame_id
            frame_id += 1
            up = scene_event(camera, frame_id, datetime.now(UTC), people=1, falls=0)
            await producer.send(topic, up.model_dump_json().encode(), key=camera.encode())
            view = await handle.query(IncidentWorkflow.incident)
            return view is not None and view.state == IncidentState.RESOLVED

        await eventually(resolved, within=60, interval=0.3)
        view = await handle.query(IncidentWorkflow.incident)
    assert view is not None and view.closed_by == "auto-resolve"
    assert view.assessments == 2  # opened, then the resolution check on a clear frame
    assert [w async for w in client.list_workflows(f'WorkflowId = "incident-{calm}-hazard"')] == []
