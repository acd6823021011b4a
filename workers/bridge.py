"""The bridge: `detection-results` -> significant events -> one workflow each.

At-least-once in, exactly-once starts out: a batch's offsets are committed only after every
message in it was started (or found already started), dead-lettered or judged insignificant.
The workflow id comes from the event, so a redelivered message meets its own workflow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord, TopicPartition
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from riskflow.endpoints import Endpoints
from riskflow.events import DetectionEvent
from riskflow.kafka import make_consumer, make_producer, start_client
from riskflow.metrics import (
    BRIDGE_DETECTIONS,
    BRIDGE_MESSAGES,
    BRIDGE_START,
    CONSUMER_LAG,
    DEAD_LETTERS,
    UNCOMMITTED_BATCHES,
)
from riskflow.models import AssessmentInput, AssessmentPolicy
from riskflow.names import (
    DEAD_LETTER_TOPIC,
    DETECTION_TOPIC,
    DLQ_ERROR_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SOURCE_HEADER,
)
from riskflow.settings import Settings
from riskflow.shutdown import stop_on_signals
from riskflow.telemetry import extract_headers, tracer
from workers.client import connect_process
from workers.significance import assess_significance
from workflows.assessment import RiskAssessmentWorkflow

logger = logging.getLogger(__name__)

Outcome = str  # started | duplicate | insignificant | dead_lettered


@dataclass(frozen=True)
class Rejection:
    reason: str  # invalid_json | schema | oversize
    error: str


def parse_message(raw: bytes | None, max_bytes: int) -> DetectionEvent | Rejection:
    if raw is None:
        return Rejection("schema", "empty message (no value)")
    if len(raw) > max_bytes:
        return Rejection("oversize", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Rejection("invalid_json", str(exc))
    try:
        return DetectionEvent.model_validate(data)
    except ValidationError as exc:
        return Rejection(
            "schema",
            "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:10]
            ),
        )


class _Stopping(Exception):
    pass


class Bridge:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        client: Client,
        settings: Settings,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._client = client
        self._settings = settings
        self._limit = asyncio.Semaphore(settings.bridge.max_in_flight)
        self._stop = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self._policy = AssessmentPolicy(
            max_llm_attempts=settings.llm.max_attempts,
            max_repairs=settings.llm.max_repairs,
            max_key_wait_seconds=settings.llm.max_key_wait_seconds,
            lease_ttl_seconds=settings.keys.scheduler.lease_ttl_seconds,
            llm_timeout_seconds=settings.llm.request_timeout_seconds
            + settings.keys.scheduler.max_slot_wait_seconds
            + 15,
        )

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Consume until `stop()`; the batch in hand is finished and committed first."""
        while not self._stop.is_set():
            batch = await self._consumer.getmany(
                timeout_ms=500, max_records=self._settings.bridge.fetch_max_records
            )
            if not batch:
                continue
            try:
                await self._process(batch)
            except _Stopping:
                logger.info("stopping with an unfinished batch: it will be redelivered")
                return
            try:
                await self._consumer.commit(
                    {tp: records[-1].offset + 1 for tp, records in batch.items()}
                )
            except CommitFailedError as exc:
                # The group moved on (a broker restart, a missed heartbeat): the partitions'
                # next owner reads these records again, and their starts meet the workflows
                # this batch already started. The consumer rejoins on its next fetch.
                UNCOMMITTED_BATCHES.inc()
                logger.warning("batch offsets not committed, it will be read again: %s", exc)
                continue
            await self._record_lag(batch)

    async def _record_lag(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Lag from the broker's high watermark (fetch responses), per partition."""
        for tp, records in batch.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - (records[-1].offset + 1))
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)

    async def _process(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        records = [r for rs in batch.values() for r in rs]
        outcomes = await asyncio.gather(*(self._bounded(r) for r in records))
        self.counts.update(outcomes)

    async def _bounded(self, record: ConsumerRecord) -> Outcome:
        async with self._limit:
            return await self.handle(record)

    async def handle(self, record: ConsumerRecord) -> Outcome:
        """Decide one message; its trace (from the edge's headers) continues here."""
        parent = extract_headers(record.headers)
        with tracer().start_as_current_span("bridge.handle", context=parent) as span:
            parsed = parse_message(record.value, self._settings.bridge.max_message_bytes)
            if isinstance(parsed, Rejection):
                await self._dead_letter(record, parsed)
                DEAD_LETTERS.labels(parsed.reason).inc()
                BRIDGE_MESSAGES.labels("unknown", "dead_lettered").inc()
                return "dead_lettered"
            camera = parsed.camera_id
            span.set_attribute("camera", camera)
            BRIDGE_DETECTIONS.labels(camera).inc(len(parsed.detections))
            outcome = await self._decide(parsed)
            BRIDGE_MESSAGES.labels(camera, outcome).inc()
            return outcome

    async def _decide(self, event: DetectionEvent) -> Outcome:
        situation = assess_significance(event, self._settings.significance)
        if situation is None:
            return "insignificant"
        inp = AssessmentInput(
            assessment_id=situation.workflow_id,
            situation=situation.rule,
            severity=situation.severity,
            event=event,
            policy=self._policy,
        )
        started = time.perf_counter()
        outcome = await self._start(inp)
        BRIDGE_START.observe(time.perf_counter() - started)
        return outcome

    async def _start(self, inp: AssessmentInput) -> Outcome:
        delay = 0.5
        while True:
            try:
                await self._client.start_workflow(
                    RiskAssessmentWorkflow.run,
                    inp,
                    id=inp.assessment_id,
                    task_queue=self._settings.temporal.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                )
                return "started"
            except WorkflowAlreadyStartedError:
                return "duplicate"
            except RPCError as exc:
                logger.warning(
                    "cannot start %s (%s); retrying in %.1fs", inp.assessment_id, exc, delay
                )
            if self._stop.is_set():
                raise _Stopping()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _dead_letter(self, record: ConsumerRecord, rejection: Rejection) -> None:
        logger.warning(
            "dead-lettering %s/%s@%s: %s: %s",
            record.topic,
            record.partition,
            record.offset,
            rejection.reason,
            rejection.error[:200],
        )
        headers: list[tuple[str, bytes]] = [
            (DLQ_REASON_HEADER, rejection.reason.encode()),
            (DLQ_ERROR_HEADER, rejection.error[:2000].encode()),
            (DLQ_SOURCE_HEADER, f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        value: Any = record.value if record.value is not None else b""
        await self._producer.send_and_wait(
            DEAD_LETTER_TOPIC, value=value, key=record.key, headers=headers
        )


async def run_bridge(settings: Settings, stop: asyncio.Event | None = None) -> Counter[str]:
    """Run until SIGINT/SIGTERM (or `stop`): finish the batch in hand, commit, close."""
    endpoints = Endpoints.of(settings)
    stop = stop or stop_on_signals()
    metrics = settings.metrics
    client = await connect_process(settings, metrics.bridge_port, metrics.bridge_sdk_port)
    consumer = make_consumer(
        endpoints.kafka, settings.kafka, DETECTION_TOPIC, group_id=settings.bridge.group_id
    )
    producer = make_producer(endpoints.kafka, settings.kafka)
    await start_client(producer)
    await start_client(consumer)
    bridge = Bridge(consumer, producer, client, settings)
    stopper = asyncio.create_task(_stop_when(stop, bridge))
    try:
        logger.info("bridge consuming %s as group %s", DETECTION_TOPIC, settings.bridge.group_id)
        await bridge.run()
    finally:
        stopper.cancel()
        await consumer.stop()
        await producer.stop()
    logger.info("bridge stopped: %s", dict(bridge.counts))
    return bridge.counts


async def _stop_when(stop: asyncio.Event, bridge: Bridge) -> None:
    await stop.wait()
    bridge.stop()
