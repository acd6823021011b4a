"""The original guide's pipeline test: scripted detections in, results read back.

Used by `riskflow pipeline test`; the running worker and bridge do the work in between.
"""

from __future__ import annotations

import json
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console

from devstack.simulate import scripted_events
from riskflow.config.settings import Settings
from riskflow.contracts.events import DetectionEvent
from riskflow.contracts.incidents import incident_workflow_id
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_consumer, make_producer
from riskflow.names import DETECTION_TOPIC, RESULTS_TOPIC
from workers.common.significance import assess_significance

console = Console()


def expected_workflow(settings: Settings, event: DetectionEvent) -> str | None:
    """The workflow the bridge starts (or signals) for `event`: with `bridge.mode: incidents`
    the camera's incident of the situation's family (None below the rule severity that opens
    one), else the situation's assessment workflow."""
    situation = assess_significance(event, settings.significance)
    if situation is None:
        return None
    if settings.bridge.mode != "incidents":
        return situation.workflow_id
    config = settings.incident_config(event.camera_id)
    if situation.severity < config.min_rule_severity:
        return None
    return incident_workflow_id(event.camera_id, config.family(situation.rule))


def missing(expected: set[str], seen: set[str]) -> set[str]:
    """The expected workflow ids no assessment has arrived for: an assessment's id is its
    workflow's id, or for an incident `<incident workflow id>-<opened>-a<n>`."""
    return {w for w in expected if w not in seen and not any(s.startswith(w + "-") for s in seen)}


async def produce(settings: Settings, cameras: list[str], frames: int) -> set[str]:
    """Send scripted events; return the workflow ids the bridge should start for them."""
    producer = make_producer(Endpoints.of(settings).kafka, settings.kafka)
    expected: set[str] = set()
    await producer.start()
    try:
        for event in scripted_events(cameras, frames):
            workflow_id = expected_workflow(settings, event)
            if workflow_id is not None:
                expected.add(workflow_id)
            await producer.send_and_wait(
                DETECTION_TOPIC, event.model_dump_json().encode(), key=event.camera_id.encode()
            )
    finally:
        await producer.stop()
    return expected


async def consume(
    settings: Settings, topic: str, duration: float, wanted: set[str] | None = None
) -> dict[str, dict[str, object]]:
    """Read `topic` from its start for `duration` s (or until an assessment of every wanted
    workflow id is seen, see `missing`)."""
    consumer = make_consumer(Endpoints.of(settings).kafka, settings.kafka, topic, group_id=None)
    await consumer.start()
    try:
        return await _read(consumer, duration, wanted)
    finally:
        await consumer.stop()


async def e2e(
    settings: Settings, cameras: list[str], frames: int, duration: float
) -> tuple[set[str], dict[str, dict[str, object]]]:
    """Send scripted events and read the results topic from where it ended before them (an
    earlier run's results never count): the workflow ids expected, and the results seen."""
    consumer = make_consumer(Endpoints.of(settings).kafka, settings.kafka, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, so the topic's partitions are known
        parts = consumer.partitions_for_topic(RESULTS_TOPIC) or set()
        partitions = [TopicPartition(RESULTS_TOPIC, p) for p in sorted(parts)]
        consumer.assign(partitions)
        for partition, end in (await consumer.end_offsets(partitions)).items():
            consumer.seek(partition, end)
        expected = await produce(settings, cameras, frames)
        return expected, await _read(consumer, duration, expected)
    finally:
        await consumer.stop()


async def _read(
    consumer: AIOKafkaConsumer, duration: float, wanted: set[str] | None
) -> dict[str, dict[str, object]]:
    seen: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            for record in records:
                data = _decode(record.value)
                key = str(data.get("assessment_id") or f"{record.partition}/{record.offset}")
                seen[key] = data
                console.print(f"[{record.topic}] {_summary(data)}")
        if wanted is not None and not missing(wanted, set(seen)):
            break
    return seen


def _decode(value: bytes | None) -> dict[str, object]:
    try:
        data = json.loads(value or b"{}")
    except json.JSONDecodeError:
        return {"raw": (value or b"")[:200].decode(errors="replace")}
    return data if isinstance(data, dict) else {"value": data}


def _summary(data: dict[str, object]) -> str:
    if "risk_level" in data or "status" in data:
        return (
            f"{data.get('assessment_id')}: {data.get('status')} {data.get('risk_level')} "
            f"({data.get('risk_score')}) {data.get('summary') or data.get('failure_reason')}"
        )
    return json.dumps(data)[:200]
