"""`riskflow pipeline test` knows which workflow each scripted event leads to, in both bridge
modes (the README's quick start runs it on the default, incidents)."""

from __future__ import annotations

from devstack.pipeline_check import expected_workflow, missing
from devstack.simulate import scripted_events
from riskflow.config.loader import load_settings
from tests.conftest import CONFIG


def test_incident_mode_expects_the_cameras_incident_and_assessment_mode_each_window() -> None:
    incidents = load_settings(CONFIG)
    assert incidents.bridge.mode == "incidents"  # the shipped default
    assessments = incidents.model_copy(
        update={"bridge": incidents.bridge.model_copy(update={"mode": "assessments"})}
    )
    events = list(scripted_events(["1"], 10))
    by_incident = {w for e in events if (w := expected_workflow(incidents, e)) is not None}
    by_window = {w for e in events if (w := expected_workflow(assessments, e)) is not None}
    assert by_incident == {"incident-1-hazard"}  # the person rule opens no incident
    assert by_window and all(w.startswith("risk-1-") for w in by_window)


def test_an_incidents_assessment_counts_for_its_incident() -> None:
    expected = {"incident-1-hazard", "risk-1-fall-60"}
    seen = {"incident-1-hazard-1796015464-a1", "risk-1-fall-60"}
    assert missing(expected, seen) == set()
    assert missing(expected, {"incident-1-hazardous-1-a1"}) == expected
