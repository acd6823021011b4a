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
from tests.histories.changed import (
    AuditBeforeNotify,
    NotifyAsActivity,
    PatchedNotifyAsActivity,
    UnguardedTellAtOnce,
)

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
        marker = event.marker_recorded_event_attributes
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and "data" in marker.details:
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


def opened_by_a_fall_waiting_for_the_model() -> list[Path]:
    """Incidents a fall opened on a release with alarm-first (the notify step an activity)
    and before `tell-at-once`: level 0 waited for the first assessment."""
    found = []
    for path in FILES:
        recorded = history(path)
        events = recorded.events
        patches = {
            e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data
            for e in events
            if "patch-data" in e.marker_recorded_event_attributes.details
        }
        alarm_first = any(b"alarm-first" in data for data in patches)
        falls = any(
            b'"rule":"fall"'
            in e.workflow_execution_signaled_event_attributes.input.payloads[0].data
            for e in events[:6]
            if e.HasField("workflow_execution_signaled_event_attributes")
        )
        told_at_once = any(b"tell-at-once" in data for data in patches)
        if workflow_type(recorded) == "IncidentWorkflow" and alarm_first and not told_at_once:
            found += [path] if falls else []
    return found


async def test_telling_a_fall_at_once_unguarded_fails_the_replay() -> None:
    """The replay test covers the alarm-first release: a fall's history recorded while level
    0 waited for the model fails on code that tells it at once without the patch, and
    replays on the real workflow (checked for every history above)."""
    paths = opened_by_a_fall_waiting_for_the_model()
    assert len(paths) >= 5, paths
    others = [c for name, c in defined_workflows().items() if name != "IncidentWorkflow"]
    for path in paths:
        result = await replayer(UnguardedTellAtOnce, *others).replay_workflow(
            history(path), raise_on_replay_failure=False
        )
        # Either kind stops the task: a command out of order, or a local activity's recorded
        # result handed to another local activity (core matches their markers by sequence).
        assert result.replay_failure is not None, path.name


def test_the_incident_asks_its_patches_before_any_local_activity() -> None:
    """`workflow.patched` asked after a local activity can be answered no on replay when the
    SDK groups that activity's resolution into the workflow task before the marker's (seen:
    `tell-at-once` asked after the gate replayed the old path, one run in five). Every patch
    of the incident is asked in `__init__`; `quiet-hours-dst`, from an earlier release, is
    the one exception: asked where quiet hours are computed, and only by runs from before
    `tell-at-once` (which implies it), so that their recorded markers still match."""
    import ast
    import inspect

    import workflows.incident
    import workflows.incident_follow_up
    import workflows.incident_state

    asked: list[tuple[str, str]] = []
    for module in (workflows.incident, workflows.incident_state, workflows.incident_follow_up):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for call in ast.walk(node):
                    if (
                        isinstance(call, ast.Call)
                        and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "patched"
                    ):
                        asked.append((node.name, ast.unparse(call.args[0])))
    outside = [(where, patch) for where, patch in asked if where != "__init__"]
    assert outside == [("_quiet_end", "QUIET_HOURS_DST_PATCH")]
    quiet_end = inspect.getsource(workflows.incident_state.IncidentNotices._quiet_end)
    assert "if self._tell_at_once or workflow.patched(QUIET_HOURS_DST_PATCH)" in quiet_end
    assert {patch for where, patch in asked if where == "__init__"} == {
        "ALARM_FIRST",
        "TELL_AT_ONCE",
        "FOLLOW_UP",
    }
