"""The paths `python -m tests.histories.record` runs, one function each, in this order: every
workflow type through the paths its commands can take. Each checks that its path was really
taken (`record.expect`: a path that went elsewhere would record a history of something else)
and saves the histories it names. `failover` is last: it re-syncs the key pool with another
key configuration."""

from __future__ import annotations

from tests.histories.assessment_paths import assessments, failover, key_wait, replays
from tests.histories.card_paths import card_clicks
from tests.histories.incident_paths import (
    auto_resolved,
    child_assessments,
    continued_as_new,
    dismissed,
    escalated,
    expired,
    followed_up,
    from_the_bridge,
    quiet_hours,
    reassessed,
)
from tests.histories.record import RecordPath

PATHS: list[RecordPath] = [
    assessments,
    replays,
    dismissed,
    from_the_bridge,
    key_wait,
    escalated,
    reassessed,
    quiet_hours,
    auto_resolved,
    expired,
    child_assessments,
    continued_as_new,
    followed_up,
    card_clicks,
    failover,
]
