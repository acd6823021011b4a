"""Kafka clients built from settings (aiokafka only: production runs Apache Kafka)."""

from __future__ import annotations

import asyncio
import logging
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


def make_consumer(
    bootstrap: str, kafka: KafkaSettings, *topics: str, group_id: str | None, **extra: Any
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
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
