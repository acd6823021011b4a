"""An operator's action reaches the incident it was meant for, or nothing. The workflow id is
the camera's (one per situation family): when an incident closes its workflow ends and the
camera's next incident starts under the same id, so an action sent to that id can land on the
next incident. Actions carry their incident id; the workflow refuses one that is not its
current incident, with a clear error and nothing changed. Real worker, dev server, Valkey."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from riskflow.config.incidents import IncidentConfig
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import OTHER_INCIDENT, IncidentState, IncidentView, OperatorAction
from riskflow.errors import IncidentActionRefused
from riskflow.infra.endpoints import Endpoints
from riskflow.names import incident_key
from tests.conftest import DashScopeAdmin
from tests.test_incident_workflow import (
    LADDER,
    QUIET_CHECK,
    fall,
    incident_worker,
    open_incident,
    stored,
)
from tests.test_incident_workflow import until as reaches
from workers.incidents.client import act
from workflows.incident import IncidentWorkflow

CONFIG = IncidentConfig(escalation=LADDER[:1], auto_resolve_after_seconds=QUIET_CHECK)


async def _next_incident(
    sent: Any, client: Client, task_queue: str, camera: str, after: IncidentView
) -> tuple[WorkflowHandle[Any, Any], IncidentView]:
    """The camera's next incident: a fall captured after `after` closed, in a new run."""
    frame = fall(camera, 100)
    captured = max(datetime.now(UTC), after.opened_at + timedelta(seconds=2))
    frame.event = frame.event.model_copy(update={"captured_at": captured})
    handle = await open_incident(sent, client, task_queue, frame, CONFIG)
    view = await reaches(  # told, and assessed (a fall is told first): nothing more to come
        handle,
        lambda v: v.incident_id != after.incident_id and bool(v.steps_sent) and v.assessments == 1,
    )
    return handle, view


@pytest.mark.timeout(180)
async def test_an_action_meant_for_a_closed_incident_never_lands_on_the_next_one(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    camera = f"tgt-{unique}"
    async with incident_worker(client, settings, stack, task_queue) as sent:
        first = await open_incident(sent, client, task_queue, fall(camera, 1), CONFIG)
        old = await reaches(first, lambda v: v.steps_sent == ["L0"])
        shown = await stored(redis, old.incident_id, lambda v: v["steps_sent"] == ["L0"])
        stale = json.dumps(shown)  # what a console showed
        assert await act(client, redis, old.incident_id, "resolve", OperatorAction(by="a")) == (
            IncidentState.RESOLVED
        )
        await first.result()
        handle, new = await _next_incident(sent, client, task_queue, camera, old)
        assert new.workflow_id == old.workflow_id and new.run_id != old.run_id

        # The console still shows the old incident open (its view lags the close): the ack
        # reaches the camera's workflow, now the new incident's, and is refused there.
        await redis.set(incident_key(old.incident_id), stale)
        with pytest.raises(IncidentActionRefused, match="not the camera's current incident"):
            await act(client, redis, old.incident_id, "ack", OperatorAction(by="late"))
        # A comment on a closed incident is allowed by the client: the workflow refuses it too.
        with pytest.raises(IncidentActionRefused, match=new.incident_id):
            await act(client, redis, old.incident_id, "comment", OperatorAction(by="b", text="x"))
        # Straight to the workflow, each update: refused before it enters history.
        for update in ("ack", "resolve", "dismiss", "comment"):
            action = OperatorAction(by="c", text="t", incident_id=old.incident_id)
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(update, action)
            cause = refused.value.cause
            assert isinstance(cause, ApplicationError) and cause.type == OTHER_INCIDENT
            assert old.incident_id in cause.message and new.incident_id in cause.message
        unchanged = await handle.query(IncidentWorkflow.incident)
        assert unchanged is not None and unchanged.state == IncidentState.NOTIFIED
        assert unchanged.version == new.version and unchanged.timeline == new.timeline

        # Meant for the current incident: accepted, and the update carries its id.
        state = await act(client, redis, new.incident_id, "ack", OperatorAction(by="li.wei"))
        assert state == IncidentState.ACKNOWLEDGED
        accepted = [
            event.workflow_execution_update_accepted_event_attributes.accepted_request.input
            async for event in handle.fetch_history_events()
            if event.HasField("workflow_execution_update_accepted_event_attributes")
        ]
        assert len(accepted) == 1 and accepted[0].name == "ack"
        assert new.incident_id.encode() in accepted[0].args.payloads[0].data
        # A sender from before the field (no incident id) is not checked.
        await handle.execute_update("comment", OperatorAction(by="old", text="hi"))
        view = await handle.query(IncidentWorkflow.incident)
        assert view is not None and view.acknowledged_by == "li.wei"
        assert [e.actor for e in view.timeline if e.kind == "commented"] == ["old"]
        await handle.terminate("test over")
