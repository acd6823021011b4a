"""riskflow's own Prometheus metrics. Labels stay bounded: camera ids, key ids, quota groups,
stages and outcomes; never frame, lease, event or workflow ids."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from riskflow.errors import PortInUseError

logger = logging.getLogger(__name__)

OTHER_CAMERA = "other"
DEFAULT_MAX_CAMERA_LABELS = 200

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# -- edge ---------------------------------------------------------------------------------
EDGE_FRAMES = Counter(
    "riskflow_edge_frames_total",
    "Frames by stage: read, inferred, published, dropped",
    ["camera", "stage"],
)
EDGE_INFERENCE = Histogram(
    "riskflow_edge_inference_seconds",
    "Detector time per frame",
    ["camera"],
    buckets=LATENCY_BUCKETS,
)
EDGE_PUBLISH = Histogram(
    "riskflow_edge_publish_seconds",
    "Enqueue to broker acknowledgement",
    ["camera"],
    buckets=LATENCY_BUCKETS,
)
EDGE_RECONNECTS = Counter("riskflow_edge_reconnects_total", "Source reconnects", ["camera"])
EDGE_DROPPED = Counter(
    "riskflow_edge_dropped_total",
    "Detection messages dropped before the broker had them, by reason: empty, detections, "
    "significant_overflow (backlog full), rejected (refused for good), unsent_at_exit",
    ["camera", "reason"],
)
EDGE_STALLS = Counter(
    "riskflow_edge_stalls_total",
    "Live streams that delivered no frame within the stall timeout (then reopened)",
    ["camera"],
)
EDGE_FRAME_AGE = Gauge(
    "riskflow_edge_seconds_since_last_frame",
    "Seconds since a live source last delivered a frame (since it was opened if none yet)",
    ["camera"],
)

# -- console ------------------------------------------------------------------------------
CONSOLE_STREAMS_DROPPED = Counter(
    "riskflow_console_streams_dropped_total",
    "Live event streams the console ended because the browser fell behind, by reason: "
    "queue_full (console.stream_queue_size changes waiting), send_timeout (it read nothing "
    "for console.stream_send_timeout_seconds)",
    ["reason"],
)

# -- bridge -------------------------------------------------------------------------------
BRIDGE_MESSAGES = Counter(
    "riskflow_bridge_messages_total",
    "Detection messages by outcome: started, duplicate (debounced/redelivered), insignificant, "
    "stale (older than the maximum age), dead_lettered; in incident mode signalled and "
    "coalesced (within bridge.incident_frame_seconds of the last frame sent to its incident)",
    ["camera", "outcome"],
)
BRIDGE_DETECTIONS = Counter("riskflow_detections_total", "Detections received", ["camera"])
DEAD_LETTERS = Counter("riskflow_dead_letters_total", "Dead-lettered messages", ["reason"])
DEAD_LETTER_ENVELOPES = Counter(
    "riskflow_dead_letter_envelopes_total",
    "Dead letters sent as a bounded envelope because the original could not be sent",
    ["cause"],
)
DEAD_LETTERS_UNSENT = Counter(
    "riskflow_dead_letters_unsent_total",
    "Dead letters whose envelope the broker refused too (logged in full, then skipped)",
)
BRIDGE_START = Histogram(
    "riskflow_bridge_start_seconds", "Workflow start round trip", buckets=LATENCY_BUCKETS
)
CONSUMER_LAG = Gauge(
    "riskflow_bridge_consumer_lag", "High watermark minus position", ["topic", "partition"]
)
UNCOMMITTED_BATCHES = Counter(
    "riskflow_bridge_uncommitted_batches_total",
    "Batches whose offsets the group refused after a rebalance (they are read again)",
)
BRIDGE_ASSIGNED = Gauge(
    "riskflow_bridge_assigned_partitions",
    "Partitions of detection-results this bridge reads now (0: it reads none; a standby among "
    "several bridges of one group holds none by design, but their sum must not be 0)",
)
BRIDGE_TOPIC_PARTITIONS = Gauge(
    "riskflow_bridge_topic_partitions",
    "Partitions detection-results has, as this bridge's metadata last said",
)
BRIDGE_UNASSIGNED_SECONDS = Gauge(
    "riskflow_bridge_unassigned_seconds",
    "Seconds this bridge has read no partition: 0 while it reads one, since it started if it "
    "never did",
)
BRIDGE_UNASSIGNED_PERIODS = Counter(
    "riskflow_bridge_unassigned_periods_total",
    "Periods in which this bridge read no partition after it had read some (a rebalance, a "
    "group that moved on, a topic gone)",
)
BRIDGE_UNASSIGNED_TOTAL = Counter(
    "riskflow_bridge_unassigned_period_seconds_total",
    "Seconds of those periods, the current one included",
)

# -- worker -------------------------------------------------------------------------------
ACTIVITY_SECONDS = Histogram(
    "riskflow_activity_seconds",
    "Activity execution time",
    ["activity", "outcome"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END = Histogram(
    "riskflow_end_to_end_seconds",
    "Capture timestamp to results written",
    ["camera"],
    buckets=LATENCY_BUCKETS,
)
ASSESSMENTS = Counter(
    "riskflow_assessments_total",
    "Assessments by status and risk level",
    ["camera", "status", "risk_level"],
)
LLM_REQUESTS = Counter(
    "riskflow_llm_requests_total",
    "LLM requests by key and classified outcome",
    ["key_id", "outcome"],
)
LLM_LATENCY = Histogram(
    "riskflow_llm_latency_seconds", "LLM request latency", ["key_id"], buckets=LATENCY_BUCKETS
)

NOTIFICATIONS = Counter(
    "riskflow_notifications_total",
    "Notification attempts by configured channel and outcome: sent, already_sent, uncertain "
    "(an earlier attempt's outcome is unknown; not sent again), in_flight, rate_limited, failed "
    "(retried), rejected (not retried), unknown_channel; robot pacing: paced (parked until the "
    "robot frees), merged (delivered inside another message's digest), blocked (the vendor said "
    "too fast: the robot closed for every worker); unguarded (sent while Redis was unreachable, "
    "without an idempotency marker or pacing)",
    ["channel", "outcome"],
)

CARD_CLICKS = Counter(
    "riskflow_card_clicks_total",
    "Clicks on incident cards by vendor and result: acted, asked (False alarm: the presser "
    "is asked for the reason), duplicate (a retried callback), "
    "refused (not riskflow's button, an unknown or unauthorised person, an incident that "
    "refused the action), failed (Temporal unreachable), rejected (the callback failed its "
    "signature, decryption or replay checks: nothing acted on)",
    ["vendor", "result"],
)

# -- key pool (wait side observed in the lease activity; the rest read from Redis) ----------
KEY_WAITS = Counter("riskflow_keypool_waits_total", "Lease requests answered 'not yet'", ["reason"])
KEY_WAIT_SECONDS = Histogram(
    "riskflow_keypool_wait_seconds",
    "Wait named to a workflow when no key had capacity",
    buckets=LATENCY_BUCKETS,
)

PROVIDER_REFUSALS = Counter(
    "riskflow_llm_refusals_total",
    "Answers that alarm: an account refused (subject: quota group) or a model refusing the "
    "worker's request (subject: model)",
    ["kind", "subject"],
)

# -- site budgets (riskflow.config.budget; written by the LLM activity that was charged) -----------
SITE_SPEND_TOKENS = Counter(
    "riskflow_site_spend_tokens_total", "Tokens the provider charged, by site", ["site"]
)
SITE_SPEND_COST = Counter(
    "riskflow_site_spend_cost_total",
    "Cost of the tokens charged, in `prices.currency`, by site (models without a price: 0)",
    ["site"],
)
SITE_BUDGET_USED = Gauge(
    "riskflow_site_budget_used_ratio",
    "Share of a site's budget limit spent in the current period (the charging worker's last "
    "reading; take the max over workers)",
    ["site", "period", "unit"],
)
SITE_BUDGET_ALERTS = Counter(
    "riskflow_site_budget_alerts_total",
    "Budget thresholds crossed (level: warning at `warn_ratio`, exhausted at 100%), once per "
    "site, period and unit",
    ["site", "period", "unit", "level"],
)


# -- incidents (written by the incident record activity and the notify activity) ------------
INCIDENTS_OPEN = Gauge(
    "riskflow_incidents_open",
    "Open incidents by severity (all workers: the last write)",
    ["severity"],
)
INCIDENT_EVENTS = Counter(
    "riskflow_incident_events_total", "Incident lifecycle events by kind", ["kind"]
)
INCIDENT_ACK_SECONDS = Histogram(
    "riskflow_incident_time_to_acknowledge_seconds",
    "Opened to acknowledged",
    buckets=(10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400),
)
INCIDENT_RESOLVE_SECONDS = Histogram(
    "riskflow_incident_time_to_resolve_seconds",
    "Opened to resolved, by who resolved it: operator or auto",
    ["by"],
    buckets=(60, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)
INCIDENT_ESCALATIONS = Counter(
    "riskflow_incident_escalations_total", "Escalation steps sent, by level", ["level"]
)
INCIDENTS_CLOSED = Counter(
    "riskflow_incidents_closed_total",
    "Closed incidents by camera and outcome: resolved, false_alarm (an operator dismissed "
    "it), no_risk (the first assessment dismissed it), expired. False-alarm rate: "
    "false_alarm / all",
    ["camera", "outcome"],
)


class CameraLabels:
    """The `camera` label value for a camera id, bounded: a message with a new camera id must
    not create Prometheus series that never go away.

    With `known` ids (the cameras of cameras.yaml) only those keep their own label; without,
    the first `max_cameras` ids seen keep theirs. Every other id is labelled `OTHER_CAMERA`.
    Thread-safe; one instance per process (pass it down like settings).
    """

    def __init__(
        self, known: Iterable[str] = (), max_cameras: int = DEFAULT_MAX_CAMERA_LABELS
    ) -> None:
        if max_cameras < 0:
            raise ValueError("max_cameras must be >= 0")
        self._known = frozenset(known)
        self._max = max_cameras
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, camera_id: str) -> str:
        if self._known:
            return camera_id if camera_id in self._known else OTHER_CAMERA
        with self._lock:
            if camera_id in self._seen:
                return camera_id
            if len(self._seen) < self._max and camera_id != OTHER_CAMERA:
                self._seen.add(camera_id)
                return camera_id
        return OTHER_CAMERA


def serve(host: str, port: int) -> None:
    """Serve /metrics (and /) on host:port from a background thread. Raises PortInUseError
    when the port is taken (so the process says so and exits, instead of a traceback)."""
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PortInUseError("metrics", host, port, "metrics.*_port") from exc
    logger.info("metrics on http://%s:%d/metrics", host, port)
