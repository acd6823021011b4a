"""The bridge: `detection-results` -> significant events -> one workflow each.

At-least-once in, exactly-once starts out: a batch's offsets are committed only after every
message in it was started (or found already started), dead-lettered or judged insignificant.
The workflow id comes from the event, so a redelivered message meets its own workflow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord, TopicPartition
from temporalio.client import Client
from temporalio.common import Priority, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from riskflow.config.settings import Settings
from riskflow.contracts.assessment import AssessmentInput
from riskflow.contracts.events import DetectionEvent
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_producer, start_client
from riskflow.infra.metrics import (
    BRIDGE_DETECTIONS,
    BRIDGE_MESSAGES,
    BRIDGE_START,
    CONSUMER_LAG,
    DEAD_LETTERS,
    UNCOMMITTED_BATCHES,
    CameraLabels,
)
from riskflow.infra.shutdown import stop_on_signals
from riskflow.infra.telemetry import extract_headers, tracer
from riskflow.names import DETECTION_TOPIC
from riskflow.priority import priority_key
from workers.bridge.admission import Rejection, Stale, admit, parse_message
from workers.bridge.dead_letter import DeadLetters, Stopping
from workers.bridge.incident_starts import IncidentStarts
from workers.bridge.partitions import (
    STATIC_COMMIT_REFUSED,
    PartitionMonitor,
    StaticPartitions,
    bridge_consumer,
)
from workers.common.client import connect_process
from workers.common.significance import Situation, assess_significance
from workflows.assessment import RiskAssessmentWorkflow

logger = logging.getLogger(__name__)

# started | duplicate | signalled (to an incident) | insignificant | stale | dead_lettered
Outcome = str

# Answers to a start that no retry can change: the request itself (or the namespace it names)
# is wrong. Dead-lettered with the reason `start_refused`, so one partition is not held for
# ever. The same codes the Temporal Go SDK does not retry (InvalidArgument, NotFound and
# NamespaceNotFound, AlreadyExists, NamespaceNotActive = FAILED_PRECONDITION), plus calls the
# server does not implement or whose values are out of range. Everything else is an outage
# of Temporal or of the bridge's own credentials (UNAVAILABLE, DEADLINE_EXCEEDED,
# RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN, ABORTED, CANCELLED, DATA_LOSS, UNAUTHENTICATED,
# PERMISSION_DENIED): retried, nothing committed, no message blamed for it.
PERMANENT_START_ERRORS = frozenset(
    {
        RPCStatusCode.INVALID_ARGUMENT,
        RPCStatusCode.NOT_FOUND,
        RPCStatusCode.ALREADY_EXISTS,
        RPCStatusCode.FAILED_PRECONDITION,
        RPCStatusCode.OUT_OF_RANGE,
        RPCStatusCode.UNIMPLEMENTED,
    }
)


class Bridge:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        client: Client,
        settings: Settings,
        static: StaticPartitions | None = None,
    ) -> None:
        """`static`: the bridge assigns itself its partitions (`bridge.assignment: static`);
        without, `consumer` is subscribed and its group assigns them."""
        self._consumer = consumer
        self._static = static
        self._refusal_logged = float("-inf")
        topics = sorted(consumer.subscription()) if static is None else [static.topic]
        self.monitor = PartitionMonitor(
            consumer, (topics or [DETECTION_TOPIC])[0], settings.bridge.no_partition_alarm_seconds
        )
        self._client = client
        self._settings = settings
        self._limit = asyncio.Semaphore(settings.bridge.max_in_flight)
        self._stop = asyncio.Event()
        self._dead = DeadLetters(producer, settings.bridge, self._stop.is_set)
        self._camera = CameraLabels(
            [c.id for c in settings.cameras], settings.metrics.max_camera_labels
        )
        self.counts: Counter[str] = Counter()
        self._policy = settings.assessment_policy()
        self._incidents = IncidentStarts(client, settings, self._policy)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Consume until `stop()`; the batch in hand is finished and committed first. The
        partitions it reads are sampled after every fetch (`run_bridge` also samples them
        every second, while a batch is in hand or before the consumer started)."""
        while not self._stop.is_set():
            if self._static is not None:
                self._static.ensure()
            batch = await self._consumer.getmany(
                timeout_ms=500, max_records=self._settings.bridge.fetch_max_records
            )
            self.monitor.sample()
            if not batch:
                continue
            try:
                await self._process(batch)
            except Stopping:
                logger.info("stopping with an unfinished batch: it will be redelivered")
                return
            if await self._commit(batch):
                await self._record_lag(batch)

    async def _commit(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> bool:
        """Commit what this member still owns. A partition that moved to another member
        mid-batch (`IllegalStateError`: not assigned) or a group that moved on
        (`CommitFailedError`) both mean: its next owner reads these records again, and their
        starts meet the workflows this batch already started. The consumer rejoins on its
        next fetch. With static assignment a refused commit means the group has members
        (STATIC_COMMIT_REFUSED: logged as an error at most once a minute)."""
        owned = self._consumer.assignment()
        offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items() if tp in owned}
        moved = len(offsets) < len(batch)
        try:
            if offsets:
                await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            if self._static is not None:
                if time.monotonic() - self._refusal_logged >= 60:
                    self._refusal_logged = time.monotonic()
                    logger.error(STATIC_COMMIT_REFUSED, self._settings.bridge.group_id)
            else:
                logger.warning("batch offsets not committed, it will be read again: %s", exc)
            moved = True
            offsets = {}
        if moved:
            UNCOMMITTED_BATCHES.inc()
            logger.info("not committed (read again later): %s", set(batch) - set(offsets))
        return bool(offsets)

    async def _record_lag(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Lag from the broker's high watermark (fetch responses), per owned partition."""
        owned = self._consumer.assignment()
        for tp, records in batch.items():
            highwater = self._consumer.highwater(tp) if tp in owned else None
            if highwater is not None:
                lag = max(0, highwater - (records[-1].offset + 1))
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)

    async def _process(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        records = [r for rs in batch.values() for r in rs]
        outcomes = await asyncio.gather(*(self._bounded(r) for r in records))
        self.counts.update(outcomes)

    async def _bounded(self, record: ConsumerRecord) -> Outcome:
        async with self._limit:
            try:
                return await self.handle(record)
            except Stopping:
                raise
            except Exception as exc:  # a message must never stop the bridge, nor loop it
                logger.exception(
                    "cannot handle %s/%s@%s", record.topic, record.partition, record.offset
                )
                await self._reject(
                    record, Rejection("bridge_error", f"{type(exc).__name__}: {exc}")
                )
                return "dead_lettered"

    async def handle(self, record: ConsumerRecord) -> Outcome:
        """Decide one message; its trace (from the edge's headers) continues here."""
        parent = extract_headers(record.headers)
        with tracer().start_as_current_span("bridge.handle", context=parent) as span:
            parsed: DetectionEvent | Rejection | Stale = parse_message(
                record.value, self._settings.bridge.max_message_bytes
            )
            if isinstance(parsed, DetectionEvent):
                parsed = admit(parsed, self._settings.bridge, datetime.now(UTC))
            if isinstance(parsed, Rejection):
                await self._reject(record, parsed)
                return "dead_lettered"
            camera = self._camera(parsed.camera_id)
            if isinstance(parsed, Stale):
                logger.debug(
                    "stale event %s@%s: %.0fs old", record.topic, record.offset, parsed.age_seconds
                )
                BRIDGE_MESSAGES.labels(camera, "stale").inc()
                return "stale"
            span.set_attribute("camera", parsed.camera_id)
            BRIDGE_DETECTIONS.labels(camera).inc(len(parsed.detections))
            outcome = await self._decide(parsed)
            if isinstance(outcome, Rejection):
                await self._reject(record, outcome, camera)
                return "dead_lettered"
            BRIDGE_MESSAGES.labels(camera, outcome).inc()
            return outcome

    async def _reject(
        self, record: ConsumerRecord, rejection: Rejection, camera: str = "unknown"
    ) -> None:
        await self._dead.send(record, rejection)
        DEAD_LETTERS.labels(rejection.reason).inc()
        BRIDGE_MESSAGES.labels(camera, "dead_lettered").inc()

    async def _decide(self, event: DetectionEvent) -> Outcome | Rejection:
        situation = assess_significance(event, self._settings.significance)
        if self._settings.bridge.mode == "incidents":
            return await self._decide_incident(event, situation)
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

    async def _decide_incident(
        self, event: DetectionEvent, situation: Situation | None
    ) -> Outcome | Rejection:
        """Incident mode: the offset is committed only after the signal-with-start was
        acknowledged (or refused for good: dead-lettered)."""
        start = self._incidents.start_of(event, situation)
        if situation is None or start is None:
            await self._incidents.clear(event)
            return "insignificant"
        if self._incidents.left_out(event, situation, start):
            return "coalesced"
        started = time.perf_counter()
        incident = situation
        outcome = await self._with_retries(
            f"incident of {event.camera_id}",
            lambda: self._incidents.signal_with_start(event, incident, start),
            "signalled",
        )
        BRIDGE_START.observe(time.perf_counter() - started)
        return outcome

    async def _start(self, inp: AssessmentInput) -> Outcome | Rejection:
        life_safety = self._settings.incidents.life_safety_severity
        priority = Priority(priority_key=priority_key(inp.severity, life_safety))
        return await self._with_retries(
            inp.assessment_id,
            lambda: self._client.start_workflow(
                RiskAssessmentWorkflow.run,
                inp,
                id=inp.assessment_id,
                task_queue=self._settings.temporal.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                priority=priority,
            ),
            "started",
        )

    async def _with_retries(
        self, what: str, start: Callable[[], Awaitable[object]], done: Outcome
    ) -> Outcome | Rejection:
        """Run one start until Temporal answers; outages are retried with backoff, answers no
        retry can change are a `start_refused` rejection."""
        delay = 0.5
        while True:
            try:
                await start()
                return done
            except WorkflowAlreadyStartedError:
                return "duplicate"
            except RPCError as exc:
                if exc.status in PERMANENT_START_ERRORS:
                    return Rejection("start_refused", f"{exc.status.name}: {exc.message}")
                logger.warning("cannot start %s (%s); retrying in %.1fs", what, exc, delay)
            except RuntimeError as exc:  # the SDK's "Failed client connect": an outage
                logger.warning(
                    "cannot reach Temporal for %s (%s); retrying in %.1fs", what, exc, delay
                )
            if self._stop.is_set():
                raise Stopping()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def run_bridge(settings: Settings, stop: asyncio.Event | None = None) -> Counter[str]:
    """Run until SIGINT/SIGTERM (or `stop`): finish the batch in hand, commit, close. The
    partitions it reads are in its metrics from the start, also while a group keeps it
    waiting for its first assignment (the consumer's start waits for it)."""
    endpoints = Endpoints.of(settings)
    stop = stop or stop_on_signals()
    metrics = settings.metrics
    client = await connect_process(settings, metrics.bridge_port, metrics.bridge_sdk_port)
    consumer, static = bridge_consumer(endpoints.kafka, settings, DETECTION_TOPIC)
    producer = make_producer(endpoints.kafka, settings.kafka)
    bridge = Bridge(consumer, producer, client, settings, static)
    watching = asyncio.create_task(bridge.monitor.run())
    try:
        await start_client(producer)
        await start_client(consumer)
        stopper = asyncio.create_task(_stop_when(stop, bridge))
        try:
            how = "group" if static is None else "static"
            group = settings.bridge.group_id
            logger.info(
                "bridge consuming %s as group %s (assignment: %s)", DETECTION_TOPIC, group, how
            )
            await bridge.run()
        finally:
            stopper.cancel()
            await consumer.stop()
            await producer.stop()
    finally:
        watching.cancel()
    logger.info("bridge stopped: %s", dict(bridge.counts))
    return bridge.counts


async def _stop_when(stop: asyncio.Event, bridge: Bridge) -> None:
    await stop.wait()
    bridge.stop()
