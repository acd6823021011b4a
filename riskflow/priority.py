"""Temporal task-queue priority from a significance rule's severity.

Temporal's priority keys run from 1 (first) to 5 (last) by default (`matching.priorityLevels`);
a task without one counts as 3. A backlogged queue dispatches every task of a key before the
first of the next, so a fall's workflow, and the activities and children it starts (they
inherit its key), overtake a backlog of lesser ones. Rules at or above the life-safety
severity (5, a fall, by default) get 1; each step of severity below it one key more, down to
5: with the default rules a crowd (2) gets 4 and a person (1) 5.
"""

from __future__ import annotations

HIGHEST_PRIORITY_KEY = 1
LOWEST_PRIORITY_KEY = 5


def priority_key(severity: int, life_safety_severity: int) -> int:
    """The task-queue priority key for a rule of `severity` (0-10)."""
    steps_below = life_safety_severity - severity
    return min(max(HIGHEST_PRIORITY_KEY + steps_below, HIGHEST_PRIORITY_KEY), LOWEST_PRIORITY_KEY)
