"""Kafka clients built from settings (aiokafka only: production runs Apache Kafka)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from riskflow.config.services import KafkaSettings
from riskflow.names import ALL_TOPICS

logger = logging.getLogger(__name__)


def connection_kwargs(bootstrap: str, kafka: KafkaSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        kwargs |= {
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": kafka.sasl_username,
            "sasl_plain_password": kafka.sasl_password,
        }
    return kwargs


def make_producer(bootstrap: str, kafka: KafkaSettings, **extra: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **connection_kwargs(bootstrap, kafka),
        acks="all",
        enable_idempotence=kafka.idempotent_producer,
        compression_type=kafka.compression,
        **extra,
    )


class Consumer(AIOKafkaConsumer):  # type: ignore[misc]  # aiokafka has no type hints
    """aiokafka's consumer, pacing the fetches that a broker answers empty at once.

    Kafka holds a fetch that finds no records for up to `fetch_max_wait_ms` (aiokafka: 500)
    before it answers. A broker that answers at once instead (the local stack's noida-db
    0.2.3: about 3,600 empty fetches a second, 0.2 ms each) turns aiokafka's background
    fetcher into a busy loop: an idle consumer used 0.8 of a core, beside the worker and the
    bridge on a two-core single box. After an empty fetch that came back sooner than
    `empty_fetch_backoff_ms`, the fetcher waits out the rest before its next fetch to that
    broker; a fetch that brought records goes again at once. A broker that holds empty
    fetches for `fetch_max_wait_ms` (Apache Kafka, 500 by default) is waited on only after
    answers it gives at once: a partition error (NotLeader, UnknownTopic: aiokafka would
    otherwise retry those at once too, aio-libs/aiokafka#1155), an offset reset, a response
    dropped after a `seek()`. A record that arrives during the wait, and a `seek()`,
    `resume()` or offset reset meanwhile, take effect at most `empty_fetch_backoff_ms` later.

    The wait wraps the fetcher's per-broker fetch (`Fetcher._proc_fetch_request`, aiokafka
    0.12-0.14) once the consumer started; `paced_fetches` says whether it did."""

    def __init__(self, *topics: str, empty_fetch_backoff_ms: int = 20, **kwargs: Any) -> None:
        super().__init__(*topics, **kwargs)
        self._empty_fetch_backoff = empty_fetch_backoff_ms / 1000
        self.paced_fetches = False

    async def start(self) -> None:
        await super().start()
        if self._empty_fetch_backoff <= 0:
            return
        fetcher = self._fetcher
        fetch = getattr(fetcher, "_proc_fetch_request", None)
        if fetch is None:
            logger.warning("aiokafka's fetcher has no _proc_fetch_request: fetches not paced")
            return
        backoff = self._empty_fetch_backoff

        async def paced(assignment: Any, node_id: Any, request: Any) -> Any:
            started = time.monotonic()
            has_records = await fetch(assignment, node_id, request)
            left = backoff - (time.monotonic() - started)
            # aiokafka's fetch answers a cancel (`stop()`, a lost assignment) with "no
            # records" too: that one is not waited on, or `stop()` would wait for it.
            task = asyncio.current_task()
            ending = (
                fetcher._closed
                or not assignment.active
                or (task is not None and task.cancelling() > 0)
            )
            if not has_records and left > 0 and not ending:
                # Cancelled by `close()` or a lost assignment: answered as aiokafka's own
                # fetch answers a cancelled request (no records), which `close()` expects.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(left)
            return has_records

        fetcher._proc_fetch_request = paced
        self.paced_fetches = True


def make_consumer(
    bootstrap: str, kafka: KafkaSettings, *topics: str, group_id: str | None, **extra: Any
) -> Consumer:
    return Consumer(
        *topics,
        empty_fetch_backoff_ms=kafka.empty_fetch_backoff_ms,
        **connection_kwargs(bootstrap, kafka),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        **extra,
    )


async def start_client(client: AIOKafkaProducer | AIOKafkaConsumer, within: float = 60.0) -> None:
    """Start a Kafka client, retrying while the broker is unreachable (a restart, a failover)
    for up to `within` seconds; then the last error propagates."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.5
    while True:
        try:
            await client.start()
            return
        except KafkaConnectionError as exc:
            if loop.time() + delay > deadline:
                raise
            logger.warning("Kafka unreachable (%s); retrying in %.1fs", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def ensure_topics(
    bootstrap: str, kafka: KafkaSettings, topics: tuple[str, ...] = ALL_TOPICS
) -> dict[str, str]:
    """Create the topics that are missing. Returns topic -> 'created' | 'exists'."""
    admin = AIOKafkaAdminClient(**connection_kwargs(bootstrap, kafka), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        result = {t: "exists" for t in topics if t in existing}
        if missing:
            new = [NewTopic(t, kafka.partitions, kafka.replication_factor) for t in missing]
            response = await admin.create_topics(new)
            for topic, code, message in _topic_errors(response):
                if code == 0:
                    result[topic] = "created"
                elif code == TopicAlreadyExistsError.errno:
                    result[topic] = "exists"
                else:
                    raise RuntimeError(f"cannot create topic {topic}: error {code}: {message}")
        return {t: result[t] for t in topics}
    finally:
        await admin.close()


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    rows = []
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        rows.append((topic, code, message))
    return rows
