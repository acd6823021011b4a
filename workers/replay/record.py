"""`riskflow replay record`: copy detection messages from the live topic into a replay file.

Reads `detection-results` from `since` (by record timestamp where the broker answers
ListOffsets by time, else from the start) up to the end offsets found at the start, with no
consumer group (nothing is committed: the bridge's progress is untouched). Keeps the events of
the given cameras captured at or after `since` that the bridge would assess (unless
`include_unflagged`), with the situation it would flag, and copies each Redis snapshot into
the line (base64) before it expires. Messages that do not parse are counted and skipped.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from riskflow.config.settings import Settings
from riskflow.contracts.events import DetectionEvent
from riskflow.contracts.replay import RecordedEvent
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_consumer, start_client
from riskflow.infra.redis import RedisClient, redis_client
from riskflow.names import DETECTION_TOPIC, is_camera_snapshot_key
from workers.common.significance import assess_significance


@dataclass
class RecordSummary:
    read: int = 0
    written: int = 0
    unparsable: int = 0
    snapshots: int = 0
    snapshots_gone: int = 0


async def _seek(consumer: AIOKafkaConsumer, since_ms: int) -> dict[TopicPartition, int]:
    """Assign every partition, seek to `since_ms`, return the end offsets to stop at."""
    partitions = [
        TopicPartition(DETECTION_TOPIC, p)
        for p in sorted(consumer.partitions_for_topic(DETECTION_TOPIC) or [])
    ]
    consumer.assign(partitions)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    try:
        found = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
    except KafkaError:
        found = {}
    for tp in partitions:
        stamp = found.get(tp)
        if stamp is not None:
            consumer.seek(tp, stamp.offset)
        elif tp in found:  # nothing at or after `since` in this partition
            consumer.seek(tp, ends[tp])
        else:
            await consumer.seek_to_beginning(tp)
    return ends


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


async def _line(
    redis: RedisClient,
    raw: bytes | None,
    settings: Settings,
    keep_unflagged: bool,
    summary: RecordSummary,
) -> RecordedEvent | None:
    try:
        event = DetectionEvent.model_validate_json(raw or b"")
    except ValidationError:
        summary.unparsable += 1
        return None
    found = assess_significance(event, settings.significance)
    if found is None and not keep_unflagged:
        return None
    snapshot_b64 = None
    snapshot = event.snapshot
    own = snapshot is not None and is_camera_snapshot_key(event.camera_id, snapshot.ref)
    if snapshot is not None and snapshot.store == "redis" and own:
        data = await redis.get(snapshot.ref)
        if data is None:
            summary.snapshots_gone += 1
        else:
            summary.snapshots += 1
            raw_image = data.encode() if isinstance(data, str) else data
            snapshot_b64 = base64.b64encode(raw_image).decode()
    return RecordedEvent(
        event=event, situation=found.rule if found else "", snapshot_b64=snapshot_b64
    )


async def record(
    settings: Settings,
    since: datetime,
    out: Path,
    cameras: list[str],
    include_unflagged: bool = False,
) -> RecordSummary:
    endpoints = Endpoints.of(settings)
    consumer = make_consumer(endpoints.kafka, settings.kafka, group_id=None)
    redis = redis_client(endpoints.redis, timeout_seconds=5)
    summary = RecordSummary()
    await start_client(consumer)
    try:
        await consumer.topics()  # loads the topic's partitions
        ends = await _seek(consumer, int(since.timestamp() * 1000))
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as sink:
            while await _behind(consumer, ends):
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    for rec in records:
                        if rec.offset >= ends[tp]:
                            continue
                        summary.read += 1
                        if cameras and (rec.key or b"").decode(errors="replace") not in cameras:
                            continue
                        line = await _line(redis, rec.value, settings, include_unflagged, summary)
                        if line is None or line.event.captured_at < since:
                            continue
                        if cameras and line.event.camera_id not in cameras:
                            continue
                        sink.write(
                            json.dumps(line.model_dump(mode="json", exclude_none=True)) + "\n"
                        )
                        summary.written += 1
    finally:
        await consumer.stop()
        await redis.aclose()
    return summary
