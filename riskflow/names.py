"""Every topic, task queue and Redis key name in one place."""

from __future__ import annotations

DETECTION_TOPIC = "detection-results"
RESULTS_TOPIC = "risk-assessment-results"
DEAD_LETTER_TOPIC = "detection-results-dlq"
INCIDENT_TOPIC = "incident-events"  # riskflow.incidents.IncidentEvent, key: camera id
ALL_TOPICS = (DETECTION_TOPIC, RESULTS_TOPIC, DEAD_LETTER_TOPIC, INCIDENT_TOPIC)

TASK_QUEUE = "risk-assessment"
BRIDGE_GROUP = "riskflow-bridge"

# Dead-letter headers: why a message was rejected and where it came from.
DLQ_ERROR_HEADER = "riskflow-error"
DLQ_REASON_HEADER = "riskflow-reason"
DLQ_SOURCE_HEADER = "riskflow-source"
# Set when the value is a JSON envelope (reason, size, sha256, source, prefix) instead of the
# original bytes, which could not be dead-lettered as they were (too large, refused).
DLQ_ENVELOPE_HEADER = "riskflow-envelope"


def camera_latest_key(camera_id: str) -> str:
    """The newest assessment of a camera (JSON string)."""
    return f"camera:{camera_id}:latest"


def camera_alerts_key(camera_id: str) -> str:
    """A capped list of assessments at or above the alert level, newest first."""
    return f"alerts:{camera_id}"


def camera_history_key(camera_id: str) -> str:
    """A capped list of recent assessment summaries, newest first, used as LLM context."""
    return f"camera:{camera_id}:history"


def assessment_key(assessment_id: str) -> str:
    """One assessment by id: the idempotency marker of aggregation."""
    return f"assessment:{assessment_id}"


# Key pool: all keys share one hash tag so the Lua scripts stay valid on Redis Cluster.
KEYPOOL_PREFIX = "rf:kp:{pool}"


# Incidents: each one's current state, the open ones per site and camera, an index of all.
INCIDENT_INDEX = "incidents:index"  # sorted set: incident id -> opened (ms)
INCIDENT_OPEN_SEVERITY = "incidents:open:severity"  # hash: open incident id -> severity


def incident_key(incident_id: str) -> str:
    """The incident's current state: `riskflow.incidents.IncidentView` as JSON."""
    return f"incident:{incident_id}"


def site_open_incidents_key(site_id: str) -> str:
    """Sorted set of the site's open incident ids, scored by opened (ms)."""
    return f"incidents:open:site:{site_id}"


def camera_open_incidents_key(camera_id: str) -> str:
    """Sorted set of the camera's open incident ids, scored by opened (ms)."""
    return f"incidents:open:camera:{camera_id}"


def incident_closed_key(workflow_id: str) -> str:
    """Until when (ms, capture time) frames of this camera and family belong to its last
    closed incident: they open nothing."""
    return f"incident:closed:{workflow_id}"
