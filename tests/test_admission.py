"""Pure parts of the bridge's judgement: clocks, snapshot URLs, the dead-letter envelope, the
bounded camera labels, and which Temporal answers are permanent."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from aiokafka.structs import ConsumerRecord
from temporalio.service import RPCStatusCode

from devstack.simulate import scene_event
from riskflow.config.bridge import BridgeSettings
from riskflow.contracts.events import SnapshotRef
from riskflow.infra.metrics import OTHER_CAMERA, CameraLabels
from workers.bridge.admission import Rejection, Stale, admit
from workers.bridge.bridge import PERMANENT_START_ERRORS
from workers.bridge.dead_letter import envelope, transient

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def test_future_stamps_beyond_the_skew_are_dead_lettered_or_clamped() -> None:
    settings = BridgeSettings(max_future_skew_seconds=60)
    within = scene_event("c", 1, NOW + timedelta(seconds=59), people=1, falls=1)
    assert admit(within, settings, NOW) == within
    ahead = scene_event("c", 2, NOW + timedelta(hours=1), people=1, falls=1)
    judged = admit(ahead, settings, NOW)
    assert isinstance(judged, Rejection) and judged.reason == "clock_skew"
    assert "3600.0s ahead" in judged.error
    clamp = BridgeSettings(max_future_skew_seconds=60, future_skew_action="clamp")
    clamped = admit(ahead, clamp, NOW)
    assert not isinstance(clamped, Rejection | Stale)
    assert clamped.captured_at == NOW and clamped.frame_id == 2
    # A camera clock reset to the epoch is stale, not skewed.
    reset = scene_event("c", 3, datetime(1970, 1, 1, tzinfo=UTC), people=1, falls=1)
    assert isinstance(admit(reset, settings, NOW), Stale)


def test_events_older_than_the_maximum_age_are_stale() -> None:
    settings = BridgeSettings(max_event_age_seconds=3600)
    fresh = scene_event("c", 1, NOW - timedelta(seconds=3599), people=1, falls=1)
    assert admit(fresh, settings, NOW) == fresh
    week = scene_event("c", 1, NOW - timedelta(days=7), people=1, falls=1)
    stale = admit(week, settings, NOW)
    assert stale == Stale(camera_id="c", age_seconds=7 * 24 * 3600)
    # Other time zones are the same instant.
    other_zone = week.model_copy(
        update={"captured_at": week.captured_at.astimezone(timezone(timedelta(hours=8)))}
    )
    assert isinstance(admit(other_zone, settings, NOW), Stale)


def test_snapshot_urls_are_checked_against_the_configured_hosts() -> None:
    settings = BridgeSettings(snapshot_url_hosts=["cdn.example.com"])
    base = scene_event("c", 1, NOW, people=1, falls=1)

    def with_ref(store: str, ref: str) -> object:
        snap = SnapshotRef(store=store, ref=ref)  # type: ignore[arg-type]
        return admit(base.model_copy(update={"snapshot": snap}), settings, NOW)

    assert not isinstance(with_ref("url", "https://cdn.example.com/a.jpg"), Rejection)
    assert not isinstance(with_ref("redis", "snapshot:c:1:2"), Rejection)  # its own snapshot
    for ref in ("{incidents}:index", "rf:kp:{pool}:keys", "snapshot:other:1:2", "snapshot:c"):
        judged = with_ref("redis", ref)  # any other Redis key is never read for a message
        assert isinstance(judged, Rejection) and judged.reason == "unsafe_snapshot_ref"
    for ref in ("/app/config/api_keys.yaml", "file:///etc/passwd", "https://evil.example/a"):
        judged = with_ref("url", ref)
        assert isinstance(judged, Rejection) and judged.reason == "unsafe_url"


def test_the_envelope_is_bounded_and_fingerprints_the_original() -> None:
    raw = b"x" * 5000 + b"tail"
    record = ConsumerRecord(
        topic="detection-results",
        partition=2,
        offset=77,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=b"k" * 1000,
        value=raw,
        checksum=None,
        serialized_key_size=1000,
        serialized_value_size=len(raw),
        headers=(),
    )
    body = envelope(record, Rejection("invalid_json", "e" * 10_000), "MessageSizeTooLarge", 64)
    assert len(body) < 4096
    data = json.loads(body)
    assert data["reason"] == "invalid_json" and data["size"] == len(raw)
    assert data["sha256"] == hashlib.sha256(raw).hexdigest()
    assert data["source"] == {
        "topic": "detection-results",
        "partition": 2,
        "offset": 77,
        "timestamp_ms": 1_700_000_000_000,
    }
    assert base64.b64decode(data["prefix_base64"]) == raw[:64] and data["truncated"] is True
    assert len(base64.b64decode(data["key_prefix_base64"])) == 256


def test_transient_producer_errors_are_retried_and_the_rest_are_not() -> None:
    for exc in (KafkaTimeoutError(), KafkaConnectionError(), NotLeaderForPartitionError()):
        assert transient(exc), exc
    for exc in (
        MessageSizeTooLargeError(),
        RecordTooLargeError(),
        TopicAuthorizationFailedError(),
        TypeError("bad value"),
    ):
        assert not transient(exc), exc


def test_permanent_temporal_answers() -> None:
    assert {RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.NOT_FOUND} <= PERMANENT_START_ERRORS
    outages = {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.ABORTED,
        RPCStatusCode.CANCELLED,
        # The bridge's own credentials: retried until fixed, not blamed on the message.
        RPCStatusCode.UNAUTHENTICATED,
        RPCStatusCode.PERMISSION_DENIED,
    }
    assert not outages & PERMANENT_START_ERRORS


def test_camera_labels_are_bounded() -> None:
    labels = CameraLabels(max_cameras=2)
    seen = [labels(c) for c in ("a", "b", "c", "a", "d", "b")]
    assert seen == ["a", "b", OTHER_CAMERA, "a", OTHER_CAMERA, "b"]
    known = CameraLabels(known=["lobby", "dock"], max_cameras=1000)
    assert [known(c) for c in ("lobby", "dock", "x")] == ["lobby", "dock", OTHER_CAMERA]
    assert CameraLabels(max_cameras=0)("a") == OTHER_CAMERA
