"""Workflow histories recorded from releases (tests/histories/<release>/*.json, recorded by
`python -m tests.histories.record`) replay on the current code without a nondeterminism
error: a deploy in the middle of an incident's life replays its history on the new code, so a
change of a workflow's commands must be guarded by `workflow.patched` (README: Versioning).
No servers: the Replayer runs the workflow code against the recorded events."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import NondeterminismError

import workflows
from tests.histories.changed import AuditBeforeNotify, NotifyAsActivity, PatchedNotifyAsActivity

HISTORIES = Path(__file__).resolve().parent / "histories"
FILES = sorted(HISTORIES.glob("*/*.json"))
DEFINITION = "__temporal_workflow_definition"


def defined_workflows() -> dict[str, type]:
    """Every `@workflow.defn` class in the `workflows` package, by workflow name."""
    found: dict[str, type] = {}
    for module_info in pkgutil.walk_packages(workflows.__path__, "workflows."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if isinstance(value, type) and DEFINITION in vars(value):
                found[getattr(value, DEFINITION).name] = value
    return found


def replayer(*classes: type) -> Replayer:
    """A replayer as the worker is built (workers/worker/worker.py): the pydantic converter, the
    tracing interceptor of every client, the sandbox with the same modules passed through."""
    return Replayer(
        workflows=list(classes),
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                "opentelemetry", "redis", "workflows"
            )
        ),
    )


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"{path.parent.name}/{path.stem}", path.read_text())


def workflow_type(recorded: WorkflowHistory) -> str:
    started = recorded.events[0].workflow_execution_started_event_attributes
    return started.workflow_type.name


def local_activities(recorded: WorkflowHistory) -> list[str]:
    """The local activity types of the history's markers, in order."""
    types = []
    for event in recorded.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            data = event.marker_recorded_event_attributes.details["data"].payloads[0].data
            types.append(json.loads(data)["activity_type"])
    return types


def notified_incidents() -> list[Path]:
    return [
        p
        for p in FILES
        if workflow_type(history(p)) == "IncidentWorkflow"
        and "notify" in local_activities(history(p))
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_a_recorded_history_replays_on_the_current_code(path: Path) -> None:
    recorded = history(path)
    result = await replayer(*defined_workflows().values()).replay_workflow(
        recorded, raise_on_replay_failure=False
    )
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


def test_every_workflow_type_has_a_recorded_history() -> None:
    """A new workflow type needs its paths in tests/histories/paths.py, recorded."""
    recorded = {workflow_type(history(p)) for p in FILES}
    defined = set(defined_workflows())
    assert {"RiskAssessmentWorkflow", "IncidentWorkflow", "ReplayAssessmentWorkflow"} <= defined
    assert defined - recorded == set(), "workflow types without a recorded history"


def test_recorded_histories_stay_small() -> None:
    for release in {p.parent for p in FILES}:
        assert sum(p.stat().st_size for p in release.iterdir()) < 2_000_000, release


@pytest.mark.parametrize("changed", [NotifyAsActivity, AuditBeforeNotify], ids=lambda c: c.__name__)
async def test_an_unguarded_change_of_the_notify_step_fails_the_replay(changed: type) -> None:
    """The replay test can fail: every notified incident's history, replayed on an
    IncidentWorkflow whose notify step issues other commands, raises a nondeterminism error."""
    paths = notified_incidents()
    assert paths, "no recorded incident that notified anybody"
    others = [c for name, c in defined_workflows().items() if name != "IncidentWorkflow"]
    for path in paths:
        result = await replayer(changed, *others).replay_workflow(
            history(path), raise_on_replay_failure=False
        )
        assert isinstance(result.replay_failure, NondeterminismError), path.name


async def test_the_same_change_behind_workflow_patched_replays() -> None:
    others = [c for name, c in defined_workflows().items() if name != "IncidentWorkflow"]
    for path in notified_incidents():
        result = await replayer(PatchedNotifyAsActivity, *others).replay_workflow(
            history(path), raise_on_replay_failure=False
        )
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"
