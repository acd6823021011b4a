"""What the bridge lets in: parse a message, then judge its clock and its snapshot URL.

Pure functions of the message, the bridge settings and the bridge's wall clock (passed in).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from riskflow.config.bridge import BridgeSettings
from riskflow.contracts.events import DetectionEvent
from riskflow.names import camera_snapshot_prefix, is_camera_snapshot_key
from riskflow.urls import UnsafeURLError, check_snapshot_url


@dataclass(frozen=True)
class Rejection:
    """Dead-letter the message with this reason and error text."""

    reason: str  # invalid_json | schema | oversize | clock_skew | unsafe_url | start_refused ...
    error: str


@dataclass(frozen=True)
class Stale:
    """Drop the message (counted, not dead-lettered): captured longer ago than allowed."""

    camera_id: str
    age_seconds: float


def parse_message(raw: bytes | None, max_bytes: int) -> DetectionEvent | Rejection:
    if raw is None:
        return Rejection("schema", "empty message (no value)")
    if len(raw) > max_bytes:
        return Rejection("oversize", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Rejection("invalid_json", str(exc))
    except RecursionError:
        return Rejection("invalid_json", "nested too deeply to be a detection message")
    try:
        return DetectionEvent.model_validate(data)
    except ValidationError as exc:
        return Rejection(
            "schema",
            "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:10]
            ),
        )


def admit(
    event: DetectionEvent, settings: BridgeSettings, now: datetime
) -> DetectionEvent | Rejection | Stale:
    """Judge a parsed event by the bridge's clock `now` (timezone-aware) and its snapshot.

    Captured more than `max_future_skew_seconds` ahead of `now`: a `Rejection`
    (`clock_skew`), or with `future_skew_action: clamp` the event with `captured_at = now`.
    Captured more than `max_event_age_seconds` ago: `Stale`. A snapshot URL that
    `check_snapshot_url` refuses: a `Rejection` (`unsafe_url`).
    """
    ahead = (event.captured_at - now).total_seconds()
    if ahead > settings.max_future_skew_seconds:
        if settings.future_skew_action == "dead_letter":
            return Rejection(
                "clock_skew",
                f"captured_at {event.captured_at.isoformat()} is {ahead:.1f}s ahead of the "
                f"bridge's clock {now.isoformat()} (max {settings.max_future_skew_seconds}s)",
            )
        event = event.model_copy(update={"captured_at": now})
    age = -ahead
    if age > settings.max_event_age_seconds:
        return Stale(camera_id=event.camera_id, age_seconds=age)
    snapshot = event.snapshot
    if snapshot is not None and snapshot.store == "url":
        try:
            check_snapshot_url(snapshot.ref, settings.snapshot_url_hosts)
        except UnsafeURLError as exc:
            return Rejection("unsafe_url", str(exc))
    if snapshot is not None and snapshot.store == "redis":
        prefix = camera_snapshot_prefix(event.camera_id)
        if not is_camera_snapshot_key(event.camera_id, snapshot.ref):
            return Rejection(
                "unsafe_snapshot_ref",
                f"snapshot ref {snapshot.ref[:200]!r} is not a key of this camera ({prefix}...)",
            )
    return event
