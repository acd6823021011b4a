"""Every topic, task queue and Redis key name in one place."""

from __future__ import annotations

DETECTION_TOPIC = "detection-results"
RESULTS_TOPIC = "risk-assessment-results"
DEAD_LETTER_TOPIC = "detection-results-dlq"
ALL_TOPICS = (DETECTION_TOPIC, RESULTS_TOPIC, DEAD_LETTER_TOPIC)

TASK_QUEUE = "risk-assessment"
BRIDGE_GROUP = "riskflow-bridge"

# Dead-letter headers: why a message was rejected and where it came from.
DLQ_ERROR_HEADER = "riskflow-error"
DLQ_REASON_HEADER = "riskflow-reason"
DLQ_SOURCE_HEADER = "riskflow-source"
# Set when the value is a JSON envelope (reason, size, sha256, source, prefix) instead of the
# original bytes, which could not be dead-lettered as they were (too large, refused).
DLQ_ENVELOPE_HEADER = "riskflow-envelope"


# Per-camera keys keep the seed guide's names on a single Redis and on Redis Cluster alike:
# aggregation touches them one at a time (each key with its own guard in its slot), so they
# need no shared hash tag. They expire `aggregate.camera_keys_ttl_seconds` after their last
# write, so cameras that went away do not leave keys behind forever.


def camera_latest_key(camera_id: str) -> str:
    """The newest assessment of a camera (JSON string)."""
    return f"camera:{camera_id}:latest"


def camera_alerts_key(camera_id: str) -> str:
    """A capped list of assessments at or above the alert level, newest first."""
    return f"alerts:{camera_id}"


def camera_history_key(camera_id: str) -> str:
    """A capped list of recent assessment summaries, newest first, used as LLM context."""
    return f"camera:{camera_id}:history"


def seen_key(list_key: str) -> str:
    """The assessment ids already pushed to `list_key` (a sorted set): the guard that makes
    "push once" idempotent. Its hash tag is the list's whole name, so on Redis Cluster it lives
    in the list's slot (camera ids cannot contain braces: see DetectionEvent.camera_id)."""
    return f"{{{list_key}}}:seen"


def assessment_key(assessment_id: str) -> str:
    """One assessment by id: the idempotency marker of aggregation."""
    return f"assessment:{assessment_id}"


# Key pool: all keys share one hash tag so the Lua scripts stay valid on Redis Cluster.
KEYPOOL_PREFIX = "rf:kp:{pool}"


def notification_marker_key(idempotency_key: str) -> str:
    """The idempotency marker of one notification step (`activities.notify.markers`)."""
    return f"notify:{idempotency_key}"
