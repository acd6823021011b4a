"""Pure incident decisions: quiet hours in a site's time zone, the escalation ladder, what
escalates a situation, and incident settings per site."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from devstack.simulate import scene_event
from riskflow.config.incidents import EscalationStep, IncidentConfig, QuietPeriod, quiet_until
from riskflow.config.loader import load_settings
from riskflow.contracts.incidents import IncidentFrame, IncidentStart, IncidentState, IncidentView
from riskflow.errors import ConfigError
from tests.conftest import CONFIG
from workflows.incident_plan import (
    Step,
    coalesced,
    due_steps,
    escalation_reason,
    highest_level,
    next_step,
    notification,
    reassess_due,
    reopens,
    with_frame,
)

NIGHT = QuietPeriod(days=["mon", "tue", "wed", "thu", "fri"], start=time(22), end=time(6))
SHANGHAI = "Asia/Shanghai"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_night_period_runs_past_midnight_in_the_sites_zone() -> None:
    # Monday 23:30 in Shanghai is 15:30 UTC: quiet until Tuesday 06:00 local.
    end = quiet_until(at("2026-11-30T15:30:00+00:00"), [NIGHT], SHANGHAI)
    assert end == at("2026-12-01T06:00:00+08:00")
    # Tuesday 05:59 local (the Monday period), and 06:00 (over).
    assert quiet_until(at("2026-11-30T21:59:00+00:00"), [NIGHT], SHANGHAI) is not None
    assert quiet_until(at("2026-11-30T22:00:00+00:00"), [NIGHT], SHANGHAI) is None
    # The same instant is not quiet for a site in UTC (15:30 there).
    assert quiet_until(at("2026-11-30T15:30:00+00:00"), [NIGHT], "UTC") is None


def test_the_weekday_is_the_day_the_period_starts() -> None:
    # Saturday 01:00 local belongs to Friday's night; Sunday 01:00 to no period.
    assert quiet_until(at("2026-12-05T01:00:00+08:00"), [NIGHT], SHANGHAI) is not None
    assert quiet_until(at("2026-12-06T01:00:00+08:00"), [NIGHT], SHANGHAI) is None


def test_adjacent_periods_join_and_a_dst_change_is_local_time() -> None:
    weekend = QuietPeriod(days=["sat", "sun"], start=time(0), end=time(0))
    friday_night = QuietPeriod(days=["fri"], start=time(18), end=time(0))
    end = quiet_until(at("2026-12-04T19:00:00+01:00"), [friday_night, weekend], "Europe/Berlin")
    assert end == at("2026-12-07T00:00:00+01:00")  # Friday 18:00 to Monday 00:00
    # Berlin leaves summer time on 2026-10-25: a 22:00-06:00 night ends at 06:00 CET.
    night = QuietPeriod(start=time(22), end=time(6))
    end = quiet_until(at("2026-10-24T21:00:00+00:00"), [night], "Europe/Berlin")
    assert end is not None and end.utcoffset() == timedelta(hours=1) and end.hour == 6


def view(**fields: object) -> IncidentView:
    now = at("2026-11-30T10:00:00+00:00")
    base: dict[str, object] = dict(
        incident_id="i",
        workflow_id="w",
        camera_id="1",
        site_id="s",
        family="hazard",
        opened_at=now,
        updated_at=now,
    )
    return IncidentView.model_validate({**base, **fields})


def test_the_ladder_counts_from_the_first_notification_then_repeats_the_last_level() -> None:
    config = IncidentConfig(
        escalation=[
            EscalationStep(after_seconds=0, channels=["a"]),
            EscalationStep(after_seconds=300, channels=["b"]),
        ],
        repeat_seconds=600,
        max_repeats=2,
    )
    notified = at("2026-11-30T10:01:00+00:00")
    assert next_step(view(), config) == Step(0, 0, at("2026-11-30T10:00:00+00:00"))
    steps = []
    current = view(notified_at=notified)
    while (step := next_step(current, config)) is not None:
        assert step.due is not None
        steps.append((step.name, step.kind, (step.due - notified).total_seconds()))
        current = current.model_copy(update={"steps_sent": [*current.steps_sent, step.name]})
    assert steps == [
        ("L0", "opened", 0),
        ("L1", "escalated", 300),
        ("L1r1", "reminder", 900),
        ("L1r2", "reminder", 1500),
    ]
    # After an outage every step due at once comes back together (the workflow sends the last)
    late = notified + timedelta(seconds=1000)
    caught = due_steps(view(notified_at=notified, steps_sent=["L0"]), config, late)
    assert [s.name for s in caught] == ["L1", "L1r1"]


def test_step_names_read_back() -> None:
    assert Step.of_name("L2r3") == Step(2, 3)
    assert Step.of_name("L0") == Step(0)
    assert highest_level(["L0", "L2r1", "L1"]) == 2
    assert highest_level([]) == -1
    for bad in ("summary-L0", "L", "Lx", "L1r"):
        with pytest.raises(ValueError, match="not a step name"):
            Step.of_name(bad)


def test_the_plan_returns_new_views_and_never_changes_one() -> None:
    config = IncidentConfig()
    before = view(rule="crowd", rule_severity=2)
    snapshot = before.model_dump()
    after = with_frame(before, frame(3, 1, "fall", 5, 1), config, at("2026-11-30T10:05:00+00:00"))
    assert before.model_dump() == snapshot
    assert (after.rule, after.rule_severity, after.frames_seen) == ("fall", 5, 1)


def test_the_rules_own_count_is_kept_apart_from_any_rules() -> None:
    config, now = IncidentConfig(), at("2026-11-30T10:05:00+00:00")
    crowd = with_frame(view(), frame(9, 0, "crowd", 2, 9), config, now)
    assert (crowd.max_count, crowd.rule_count) == (9, 9)
    fell = with_frame(crowd, frame(9, 1, "fall", 5, 1), config, now)
    assert (fell.rule, fell.max_count, fell.rule_count) == ("fall", 9, 1)
    # a lesser rule's frame changes neither; the fall's own larger count does
    lesser = with_frame(fell, frame(12, 0, "crowd", 2, 12), config, now)
    assert (lesser.max_count, lesser.rule_count) == (12, 1)
    assert with_frame(lesser, frame(4, 2, "fall", 5, 2), config, now).rule_count == 2


def test_a_backlog_is_coalesced_keeping_the_worst_and_the_newest_of_each_rule() -> None:
    frames = [frame(5, 0, "crowd", 2, 5) for _ in range(30)]
    frames[3] = frame(5, 1, "fall", 5, 1)
    frames[-1] = IncidentFrame(event=frames[-1].event)  # a clear frame, the newest
    kept = coalesced(frames, 6)
    assert len(kept) == 6
    assert kept[0] is frames[3]  # the fall, in arrival order
    assert kept[-1] is frames[-1]
    assert frames[-2] in kept  # the newest crowd frame
    assert coalesced(frames[:4], 6) == frames[:4]


def test_a_ladder_that_does_not_start_at_once_is_refused() -> None:
    with pytest.raises(ValueError, match="after_seconds 0"):
        IncidentConfig(escalation=[EscalationStep(after_seconds=60, channels=["a"])])


def frame(people: int, falls: int, rule: str, severity: int, count: int) -> IncidentFrame:
    event = scene_event("1", 1, datetime.now(UTC), people=people, falls=falls)
    return IncidentFrame(event=event, rule=rule, severity=severity, count=count)


def test_what_escalates_a_situation() -> None:
    config = IncidentConfig(count_step=3)
    crowd = view(rule="crowd", rule_severity=2, max_count=5, classes=["Normal"])
    assert escalation_reason(crowd, frame(5, 0, "crowd", 2, 5), config) == ""
    assert escalation_reason(crowd, frame(6, 0, "crowd", 2, 6), config) == ""  # flicker
    assert "count grew" in escalation_reason(crowd, frame(8, 0, "crowd", 2, 8), config)
    assert "more severe" in escalation_reason(crowd, frame(5, 1, "fall", 5, 1), config)
    assert "new class: Fall" in escalation_reason(crowd, frame(5, 1, "crowd", 2, 4), config)


def test_a_site_sets_its_own_incident_behaviour(tmp_path: object) -> None:
    settings = load_settings(
        CONFIG,
        sites=[
            {
                "id": "plant-a",
                "timezone": SHANGHAI,
                "cameras": ["7"],
                "incidents": {"escalation": [{"after_seconds": 0, "channels": ["shift-lead"]}]},
            }
        ],
    )
    assert settings.incident_config("7").escalation[0].channels == ["shift-lead"]
    assert settings.incident_config("8") == settings.incidents
    unknown = {"escalation": [{"after_seconds": 0, "channels": ["plant-a-ops"]}]}
    with pytest.raises(ConfigError, match=r"site 'plant-a': escalation level 0 .*plant-a-ops"):
        load_settings(CONFIG, sites=[{"id": "plant-a", "cameras": ["7"], "incidents": unknown}])
    with pytest.raises(ConfigError, match="quiet_hours"):
        load_settings(CONFIG, incidents={"quiet_hours": [{"start": "25:00", "end": "06:00"}]})


def test_quiet_hours_round_the_clock_end_within_a_week() -> None:
    always = QuietPeriod(start=time(0), end=time(0))
    now = at("2026-11-30T12:00:00+00:00")
    end = quiet_until(now, [always], SHANGHAI)
    assert end is not None and now < end <= now + timedelta(days=8)


def _incident(incident_id: str) -> IncidentView:
    opened = at("2026-11-30T08:00:00+00:00")
    return IncidentView(
        incident_id=incident_id,
        workflow_id="incident-cam1-fall",
        camera_id="cam1",
        site_id="plant-a",
        family="fall",
        opened_at=opened,
        updated_at=opened,
    )


@pytest.mark.parametrize(
    ("base", "incident_id", "link"),
    [
        (
            "https://ops.example/riskflow",
            "incident-cam1-fall-1",
            "https://ops.example/riskflow/incidents/incident-cam1-fall-1",
        ),
        ("http://127.0.0.1:8300/", "inc-1", "http://127.0.0.1:8300/incidents/inc-1"),
        # An id is one path segment however it is spelt: never a path, query or fragment.
        (
            "https://ops.example",
            "a/../b?x=1#y",
            "https://ops.example/incidents/a%2F..%2Fb%3Fx%3D1%23y",
        ),
        ("https://ops.example", "事件 1", "https://ops.example/incidents/%E4%BA%8B%E4%BB%B6%201"),
        ("", "inc-1", ""),  # no console configured: no link
    ],
)
def test_notifications_link_to_the_incidents_page_in_the_console(
    base: str, incident_id: str, link: str
) -> None:
    start = IncidentStart(
        workflow_id="incident-cam1-fall",
        camera_id="cam1",
        family="fall",
        site_id="plant-a",
        console_url=base,
    )
    request = notification(start, _incident(incident_id), "opened", 0, "L0", "ops")
    assert request.console_url == link


def test_reassessment_is_due_an_interval_after_the_last_assessment_with_a_new_frame() -> None:
    opened = at("2026-11-30T10:00:00+00:00")
    view = IncidentView(
        incident_id="i",
        workflow_id="w",
        camera_id="c",
        site_id="s",
        family="hazard",
        opened_at=opened,
        updated_at=opened,
    )
    every = IncidentConfig(reassess_every_seconds=600)
    assert reassess_due(view, every, new_frame=True) == opened + timedelta(minutes=10)
    view.assessed_at = opened + timedelta(minutes=3)
    assert reassess_due(view, every, new_frame=True) == opened + timedelta(minutes=13)
    assert reassess_due(view, every, new_frame=False) is None  # nothing new to look at
    assert reassess_due(view, IncidentConfig(), new_frame=True) is None  # 0: off
    view.state = IncidentState.RESOLVED
    assert reassess_due(view, every, new_frame=True) is None


@pytest.mark.parametrize("seconds", [-1, 0.5, 59])
def test_a_reassessment_interval_under_a_minute_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="reassess_every_seconds"):
        IncidentConfig(reassess_every_seconds=seconds)


def test_which_frames_reaching_a_closed_incident_open_a_new_one() -> None:
    """As the close marker the next run's gate reads: captured after the close (its newest
    frame, plus a dismissal's cooldown), or more severe than any rule the incident saw."""
    closed_at = at("2026-11-30T10:30:00+00:00")
    resolved = view(rule="crowd", rule_severity=2, state="resolved", closed_at=closed_at)

    def seen(rule: str, severity: int, captured_at: datetime) -> IncidentFrame:
        event = scene_event("1", 9, captured_at, people=5, falls=0)
        return IncidentFrame(event=event, rule=rule, severity=severity, count=5)

    second = timedelta(seconds=1)
    assert not reopens(resolved, seen("crowd", 2, closed_at - second), 0)  # its own, late
    assert reopens(resolved, seen("crowd", 2, closed_at + second), 0)
    assert reopens(resolved, seen("fall", 5, closed_at - second), 0)  # worse than it saw
    assert not reopens(resolved, seen("", 0, closed_at + second), 0)  # clear frames never
    cooldown = 300
    assert not reopens(resolved, seen("crowd", 2, closed_at + second), cooldown)
    assert reopens(resolved, seen("crowd", 2, closed_at + 301 * second), cooldown)
    assert not reopens(view(rule="crowd", rule_severity=2), seen("fall", 5, closed_at), 0)
