"""`bridge:` in riskflow.yaml: how detection events become workflows (mode, partitions,
batching, clocks, snapshot URLs)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from riskflow.names import BRIDGE_GROUP


class BridgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["incidents", "assessments"] = Field(
        default="incidents",
        description="incidents: one durable incident per camera situation (signal-with-start); "
        "assessments: one assessment workflow per debounce window, no incident",
    )
    clear_signal_seconds: float = Field(
        default=5.0,
        gt=0,
        description="incidents: how often a camera's frames without a match are passed to its "
        "open incident (the auto-resolve check looks at the newest)",
    )
    incident_frame_seconds: float = Field(
        default=1.0,
        ge=0,
        description="incidents: at most one frame per incident this often (capture time); "
        "frames between are left out unless more severe (0: every frame)",
    )
    group_id: str = BRIDGE_GROUP
    assignment: Literal["auto", "group", "static"] = Field(
        default="auto",
        description="how the bridge gets partitions of detection-results. group: from the "
        "consumer group (any number of bridges share them; the broker must evict a member "
        "that died, as Apache Kafka does); static: it assigns itself every partition and "
        "commits to the group without joining it (one bridge per group; nothing to evict "
        "after a kill -9); auto: static on the local stack's broker (kafka_bootstrap unset), "
        "group on a configured one",
    )
    partitions_refresh_seconds: float = Field(
        default=30.0,
        gt=0,
        description="static: how often the topic's partitions are looked up again (a topic "
        "given more partitions is read whole within this)",
    )
    no_partition_alarm_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a bridge that has read no partition this long logs an error (status and "
        "the metrics show it from the first second)",
    )
    max_in_flight: int = Field(default=64, gt=0)
    max_message_bytes: int = Field(default=1_048_576, gt=0)
    fetch_max_records: int = Field(default=200, gt=0)
    # Clocks: capture times come from camera and edge clocks; the bridge judges them by its own.
    max_future_skew_seconds: float = Field(
        default=300.0, gt=0, description="how far past the bridge's clock captured_at may be"
    )
    future_skew_action: Literal["dead_letter", "clamp"] = Field(
        default="dead_letter",
        description="beyond the skew: dead-letter (reason clock_skew) or clamp captured_at "
        "to the bridge's clock",
    )
    max_event_age_seconds: float = Field(
        default=6 * 3600.0, gt=0, description="older events are dropped as stale and counted"
    )
    snapshot_url_hosts: list[str] = Field(
        default_factory=list,
        description="hosts (or .domain) a snapshot URL may name; empty: any http(s) host",
    )
    # Dead letters that cannot be sent as they are go as a bounded JSON envelope.
    dead_letter_prefix_bytes: int = Field(default=1024, ge=0, le=65_536)
    dead_letter_send_attempts: int = Field(
        default=3, gt=0, description="sends of the original bytes before the envelope"
    )
