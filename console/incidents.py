"""The plug point for incidents (issue 17 builds `IncidentWorkflow` and its Redis views).

PLACEHOLDER: until the incident workflow lands, every camera has 0 open incidents and no
incident can be found. The camera tiles' badge, the navigation entry and the action endpoint
(`api.py`: role and CSRF checks already enforced) call only these functions, so the incident
pages replace this module without touching the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

INCIDENTS_AVAILABLE = False  # PLACEHOLDER: True once issue 17's views are read here


async def open_incident_counts(camera_ids: Iterable[str]) -> dict[str, int]:
    """Open incidents per camera id: {camera_id: count}. PLACEHOLDER: always 0."""
    return dict.fromkeys(camera_ids, 0)


async def incident_exists(incident_id: str) -> bool:
    """Whether `incident_id` names an open incident. PLACEHOLDER: never."""
    del incident_id
    return False
