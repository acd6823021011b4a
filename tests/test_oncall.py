"""On-call rosters (riskflow.config.oncall): who is on call at every moment of a month, by
wall-clock hand-offs across DST changes, layers with daily windows, overrides; the settings'
checks; `riskflow oncall who / show`."""

from __future__ import annotations

import bisect
import json
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from riskflow.config.oncall import Layer, OnCallSettings, Override, Roster, on_call, shifts
from riskflow.errors import ConfigError
from tests.conftest import local_settings

BERLIN = ZoneInfo("Europe/Berlin")  # DST: 2026-03-29 (spring forward), 2026-10-25 (back)
TEAM = ["wang.gong", "li.wei", "zhao"]


def weekly(start: date = date(2026, 10, 12), at: time = time(8, 0)) -> Layer:
    return Layer(name="weekly", rotation="weekly", members=TEAM, start=start, handoff=at)


def test_a_weekly_rotation_hands_off_at_0800_local_every_monday_across_the_dst_change() -> None:
    """Every hour of 30 days around the change back to winter time: the person on call is
    the one of the last Monday 08:00 (wall clock) before that hour."""
    roster = Roster(id="ops", site="plant-a", layers=[weekly()])
    mondays = [date(2026, 10, 12) + timedelta(weeks=k) for k in range(6)]
    handoffs = [datetime.combine(d, time(8, 0), tzinfo=BERLIN) for d in mondays]
    assert handoffs[2].utcoffset() == timedelta(hours=1)  # 26 Oct: winter time already
    assert handoffs[1].utcoffset() == timedelta(hours=2)
    moment = datetime(2026, 10, 12, 6, 0, tzinfo=UTC)  # 08:00 CEST: the first hand-off
    for _ in range(30 * 24):
        found = on_call(roster, BERLIN, moment)
        assert found is not None
        k = bisect.bisect_right(handoffs, moment) - 1
        assert found.person == TEAM[k % 3], moment
        assert found.since == handoffs[k] and found.until == handoffs[k + 1]
        moment += timedelta(hours=1)
    # The hand-off after the change is at 07:00 UTC, the one before at 06:00 UTC.
    assert on_call(roster, BERLIN, datetime(2026, 10, 26, 6, 59, tzinfo=UTC)).person == "li.wei"  # type: ignore[union-attr]
    assert on_call(roster, BERLIN, datetime(2026, 10, 26, 7, 0, tzinfo=UTC)).person == "zhao"  # type: ignore[union-attr]


def test_nobody_before_the_rotation_starts_and_a_hand_off_in_the_spring_gap_still_happens() -> None:
    roster = Roster(id="ops", site="plant-a", layers=[weekly()])
    assert on_call(roster, BERLIN, datetime(2026, 10, 12, 5, 59, tzinfo=UTC)) is None
    daily = Layer(
        name="daily", rotation="daily", members=TEAM, start=date(2026, 3, 27), handoff=time(2, 30)
    )
    gap = Roster(id="gap", site="plant-a", layers=[daily])
    seen = [
        on_call(gap, BERLIN, datetime(2026, 3, 28, 12, 0, tzinfo=UTC) + timedelta(minutes=30 * i))
        for i in range(48)
    ]
    people = [s.person for s in seen if s is not None]
    assert len(people) == 48 and people.count("li.wei") > 0 and people.count("zhao") > 0
    changes = sum(1 for a, b in pairwise(people) if a != b)
    assert changes == 1  # 29 March has no 02:30: the hand-off is once, not twice or never


def test_an_override_wins_for_its_day_and_only_for_it() -> None:
    swap = Override(
        person="ma.li", start=datetime(2026, 10, 14, 8, 0), end=datetime(2026, 10, 15, 8, 0)
    )
    roster = Roster(id="ops", site="plant-a", layers=[weekly()], overrides=[swap])
    before = on_call(roster, BERLIN, datetime(2026, 10, 14, 5, 59, tzinfo=UTC))
    during = on_call(roster, BERLIN, datetime(2026, 10, 14, 12, 0, tzinfo=UTC))
    after = on_call(roster, BERLIN, datetime(2026, 10, 15, 6, 0, tzinfo=UTC))
    assert before is not None and before.person == "wang.gong"
    assert before.until == datetime(2026, 10, 14, 6, 0, tzinfo=UTC)  # the override's start
    assert during is not None and (during.person, during.source) == ("ma.li", "override")
    assert after is not None and after.person == "wang.gong"


def test_a_night_layer_covers_its_hours_over_the_weekly_one() -> None:
    nights = Layer(
        name="nights",
        rotation="shifts",
        members=["ma.li", "zhou", "sun"],
        start=date(2026, 12, 7),
        handoffs=[time(8, 0), time(20, 0)],
        only={"start": time(20, 0), "end": time(8, 0)},
    )
    shanghai = ZoneInfo("Asia/Shanghai")
    roster = Roster(id="ops", site="plant-a", layers=[weekly(date(2026, 12, 7)), nights])
    day = on_call(roster, shanghai, datetime(2026, 12, 8, 10, 0, tzinfo=shanghai))
    night = on_call(roster, shanghai, datetime(2026, 12, 8, 21, 0, tzinfo=shanghai))
    late = on_call(roster, shanghai, datetime(2026, 12, 9, 3, 0, tzinfo=shanghai))
    assert day is not None and (day.person, day.source) == ("wang.gong", "weekly")
    assert day.until == datetime(2026, 12, 8, 20, 0, tzinfo=shanghai)  # the night takes over
    # Shifts 08:00 / 20:00 from 7 Dec: ma.li (7th day), zhou (7th night), sun (8th day),
    # ma.li (8th night), zhou (9th day), sun (9th night).
    assert night is not None and (night.person, night.source) == ("ma.li", "nights")
    assert night.until == datetime(2026, 12, 9, 8, 0, tzinfo=shanghai)
    assert late is not None and late.person == "ma.li"
    found = shifts(
        roster,
        shanghai,
        datetime(2026, 12, 8, 0, 0, tzinfo=shanghai),
        datetime(2026, 12, 10, 0, 0, tzinfo=shanghai),
    )
    assert [(s.person, s.source) for s in found] == [
        ("zhou", "nights"),
        ("wang.gong", "weekly"),
        ("ma.li", "nights"),
        ("wang.gong", "weekly"),
        ("sun", "nights"),
    ]
    assert all(a.until == b.since for a, b in pairwise(found))


@pytest.mark.parametrize(
    ("layer", "why"),
    [
        ({"name": "x", "rotation": "shifts", "members": ["a"], "start": "2026-12-07"}, "handoffs"),
        ({"name": "x", "rotation": "daily", "members": [], "start": "2026-12-07"}, "members"),
        (
            {
                "name": "x",
                "rotation": "shifts",
                "members": ["a"],
                "start": "2026-12-07",
                "handoffs": ["08:00", "08:00"],
            },
            "different",
        ),
    ],
)
def test_a_layer_that_cannot_rotate_is_refused(layer: dict[str, object], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        Layer.model_validate(layer)


def test_an_override_with_an_offset_or_backwards_is_refused() -> None:
    with pytest.raises(ValidationError, match="wall-clock"):
        Override(
            person="a", start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 1, 2, tzinfo=UTC)
        )
    with pytest.raises(ValidationError, match="ends after"):
        Override(person="a", start=datetime(2026, 1, 2), end=datetime(2026, 1, 1))


ROSTERS = {
    "rosters": [
        {
            "id": "night-ops",
            "site": "plant-a",
            "manager": "wang.gong",
            "layers": [
                {
                    "name": "weekly",
                    "rotation": "weekly",
                    "members": ["wang.gong", "li.wei"],
                    "start": "2026-12-07",
                    "handoff": "08:00",
                }
            ],
        }
    ]
}
PEOPLE = [
    {"id": "wang.gong", "name": "王工", "roles": {"plant-a": "operator"}},
    {"id": "li.wei", "name": "李伟", "roles": {"plant-a": "operator"}},
]
SITES = [{"id": "plant-a", "name": "一号厂区", "language": "zh-CN", "timezone": "Asia/Shanghai"}]


def test_rosters_name_configured_sites_and_people(tmp_path: Path) -> None:
    ok = local_settings(tmp_path, sites=SITES, people=PEOPLE, oncall=ROSTERS)
    assert ok.oncall.roster("night-ops") is not None
    stranger = json.loads(json.dumps(ROSTERS))
    stranger["rosters"][0]["layers"][0]["members"].append("nobody")
    with pytest.raises(ConfigError, match=r"not in people\.yaml"):
        local_settings(tmp_path, sites=SITES, people=PEOPLE, oncall=stranger)
    elsewhere = json.loads(json.dumps(ROSTERS))
    elsewhere["rosters"][0]["site"] = "plant-z"
    with pytest.raises(ConfigError, match="not configured"):
        local_settings(tmp_path, sites=SITES, people=PEOPLE, oncall=elsewhere)
    with pytest.raises(ValidationError, match="unique"):
        OnCallSettings.model_validate({"rosters": [ROSTERS["rosters"][0]] * 2})


def test_oncall_who_and_show_say_who_in_the_sites_time(tmp_path: Path) -> None:
    from cli.app import app

    env = {
        "RISKFLOW_LOCAL__STATE_DIR": str(tmp_path),
        "RISKFLOW_SITES": json.dumps(SITES),
        "RISKFLOW_PEOPLE": json.dumps(PEOPLE),
        "RISKFLOW_ONCALL": json.dumps(ROSTERS),
        "COLUMNS": "200",
    }
    runner = CliRunner()
    who = runner.invoke(app, ["oncall", "who", "--at", "2026-12-14T09:00+08:00"], env=env)
    assert who.exit_code == 0, who.output
    assert "李伟 (li.wei)" in who.output and "2026-12-21 08:00 CST" in who.output
    assert "王工 (wang.gong)" in who.output  # next
    show = runner.invoke(
        app,
        ["oncall", "show", "night-ops", "--days", "14", "--at", "2026-12-07T08:00+08:00"],
        env=env,
    )
    assert show.exit_code == 0, show.output
    assert show.output.count("weekly") >= 2 and "2026-12-14 08:00 CST" in show.output
    missing = runner.invoke(app, ["oncall", "show", "nope"], env=env)
    assert missing.exit_code == 2 and "night-ops" in missing.output
    naive = runner.invoke(app, ["oncall", "who", "--at", "2026-12-14T09:00"], env=env)
    assert naive.exit_code != 0 and "offset" in naive.output
