"""Every topic, task queue and Redis key name in one place."""

from __future__ import annotations

DETECTION_TOPIC = "detection-results"
RESULTS_TOPIC = "risk-assessment-results"
DEAD_LETTER_TOPIC = "detection-results-dlq"
INCIDENT_TOPIC = "incident-events"  # riskflow.contracts.incidents.IncidentEvent, key: camera id
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


# Per-camera keys keep their public names (`camera:1:latest`, `alerts:1`) on a single Redis
# and on Redis Cluster alike: aggregation touches them one at a time (each key with its own
# guard in its slot), so they need no shared hash tag. They expire
# `aggregate.camera_keys_ttl_seconds` after their last write, so cameras that went away do not
# leave keys behind forever.


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


def camera_snapshot_prefix(camera_id: str) -> str:
    """Every snapshot key of a camera starts so: `snapshot:{camera}:{captured ms}:{frame}`
    (a JPEG the edge writes with a TTL). A message's `snapshot.ref` with `store: redis` must
    name such a key of its own camera, never any other Redis key."""
    return f"snapshot:{camera_id}:"


def camera_snapshot_key(camera_id: str, captured_ms: int, frame: int) -> str:
    """Where the edge keeps one frame's JPEG: `snapshot:{camera}:{captured ms}:{frame}`."""
    return f"{camera_snapshot_prefix(camera_id)}{captured_ms}:{frame}"


def is_camera_snapshot_key(camera_id: str, key: str) -> bool:
    """Whether `key` is one of `camera_id`'s snapshot keys: the only Redis keys a message's
    `snapshot.ref` may name (the bridge, the LLM call, replay and the console check it)."""
    return key.startswith(camera_snapshot_prefix(camera_id))


def assessment_key(assessment_id: str) -> str:
    """One assessment by id: the idempotency marker of aggregation."""
    return f"assessment:{assessment_id}"


# Key pool: all keys share one hash tag so the Lua scripts stay valid on Redis Cluster.
KEYPOOL_PREFIX = "rf:kp:{pool}"


def notification_marker_key(idempotency_key: str) -> str:
    """The idempotency marker of one notification step (`activities.notify.markers`)."""
    return f"notify:{idempotency_key}"


NOTIFICATION_PACING_PARTS = ("sent", "block", "parked", "taken", "taken_at")


def notification_pacing_keys(robot_id: str) -> list[str]:
    """One robot's pacing keys (`activities.notify.pacing`), in NOTIFICATION_PACING_PARTS'
    order: `notify-pace:{<robot id>}:<part>`. They share the robot's hash tag, so the one script
    that reads and writes them runs in one slot of a Redis Cluster."""
    return [f"notify-pace:{{{robot_id}}}:{part}" for part in NOTIFICATION_PACING_PARTS]


# Incidents: each one's current state, the open ones per site and camera, an index of all.
# Every incident key carries the hash tag {incidents}: one script writes several of them
# atomically, so on a Redis Cluster they share one slot (as the key pool's keys do).
INCIDENTS_TAG = "{incidents}"
INCIDENT_INDEX = f"{INCIDENTS_TAG}:index"  # sorted set: incident id -> opened (ms)
INCIDENT_OPEN_SEVERITY = f"{INCIDENTS_TAG}:open:severity"  # hash: open incident id -> severity
# A counter raised by every applied view write: readers (the console's live list) see that
# something changed by reading one integer.
INCIDENT_CHANGES = f"{INCIDENTS_TAG}:changes"


def incident_key(incident_id: str) -> str:
    """The incident's current state: `riskflow.contracts.incidents.IncidentView` as JSON."""
    return f"{INCIDENTS_TAG}:incident:{incident_id}"


def site_open_incidents_key(site_id: str) -> str:
    """Sorted set of the site's open incident ids, scored by opened (ms)."""
    return f"{INCIDENTS_TAG}:open:site:{site_id}"


def camera_open_incidents_key(camera_id: str) -> str:
    """Sorted set of the camera's open incident ids, scored by opened (ms)."""
    return f"{INCIDENTS_TAG}:open:camera:{camera_id}"


def incident_closed_key(workflow_id: str) -> str:
    """Until when (ms, capture time) frames of this camera and family belong to its last
    closed incident: they open nothing."""
    return f"{INCIDENTS_TAG}:closed:{workflow_id}"


def site_spend_key(site_id: str, period: str, period_id: str) -> str:
    """A site's spend in one period (hash: `tokens`, `cost_micro`), e.g.
    `spend:{plant-a}:day:2026-11-30`; the site's keys share its hash tag (one script charges
    the day and the month together, also on Redis Cluster)."""
    return f"spend:{{{site_id}}}:{period}:{period_id}"


def app_card_key(channel: str, task_id: str) -> str:
    """A card an app channel sent (JSON, kept as long as its buttons can be answered): what
    the callback listener updates when one of them is pressed."""
    return f"rf:card:{channel}:{task_id}"


def incident_cards_key(incident_id: str) -> str:
    """The app cards of an incident, whatever their channel (hash: "vendor|channel|card id"
    -> the rank the card last showed: 0 open, 1 acknowledged, 2 closed): every one the
    callback listener can redraw is redrawn when the incident changes from any of them."""
    return f"rf:cards:{{{incident_id}}}"


def card_field(vendor: str, channel: str, card_id: str) -> str:
    """A card's field in `incident_cards_key` (channel names never hold "|")."""
    return f"{vendor}|{channel}|{card_id}"


def card_of_field(field: str) -> tuple[str, str, str]:
    """(vendor, channel, card id) of a `card_field`."""
    vendor, channel, card_id = field.split("|", 2)
    return vendor, channel, card_id


def card_told_key(channel: str, card_id: str) -> str:
    """The people told something on a card by themselves (a set: DingTalk userids): their
    own view of it is redrawn whenever everyone's is."""
    return app_card_key(channel, card_id) + ":told"


CARD_CLICK_QUEUE = "card-clicks"  # the callback listener's own workers (CardClickWorkflow)


def card_click_workflow_id(channel: str, event_id: str) -> str:
    """One workflow per click (`CardClickWorkflow`): the vendor's retries of it start nothing."""
    return f"card-click-{channel}-{event_id}"


def callback_replay_key(channel: str, signature: str) -> str:
    """Set for a while once a chat app's signed callback was taken: the same request again is
    a replay (`workers.callbacks.app`)."""
    return f"rf:cb-seen:{channel}:{signature[:128]}"


def card_click_outbox_key(task_queue: str) -> str:
    """Clicks Temporal did not take yet (hash: workflow id -> the click as JSON), kept by the
    callback listener of `task_queue` until it starts them."""
    return f"rf:clicks:outbox:{task_queue}"
