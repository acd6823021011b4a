"""Dead letters that always get out: the original bytes if the broker takes them, otherwise a
bounded JSON envelope that names and fingerprints them.

Nothing a message contains may stop the bridge: a value over the producer's
`max_request_size`, a value or key the broker refuses, or any other producer error sends the
envelope instead. Transient errors (timeouts, a lost connection, a leader moving) are retried.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.structs import ConsumerRecord

from riskflow.config.bridge import BridgeSettings
from riskflow.infra.metrics import DEAD_LETTER_ENVELOPES, DEAD_LETTERS_UNSENT
from riskflow.names import (
    DEAD_LETTER_TOPIC,
    DLQ_ENVELOPE_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SOURCE_HEADER,
)
from workers.bridge.admission import Rejection

logger = logging.getLogger(__name__)

ENVELOPE_VERSION = 1
MAX_ERROR_CHARS = 2000
MAX_KEY_BYTES = 256
MAX_DELAY_SECONDS = 10.0


class Stopping(Exception):
    """The bridge was asked to stop while a step was still retrying."""


class DeadLetterProducer(Protocol):
    async def send_and_wait(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: Any = None,
        timestamp_ms: Any = None,
        headers: Any = None,
    ) -> object: ...


def transient(exc: BaseException) -> bool:
    """Whether sending again may succeed: timeouts, connections, aiokafka's retriable errors."""
    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError | TimeoutError):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


def envelope(record: ConsumerRecord, rejection: Rejection, cause: str, prefix_bytes: int) -> bytes:
    """The bounded stand-in for a message: JSON with reason, error, the cause of the fallback,
    size (bytes), sha256 (hex) of the value, source topic/partition/offset/timestamp_ms, and
    the first `prefix_bytes` of the value (base64)."""
    raw: bytes = record.value or b""
    return json.dumps(
        {
            "riskflow_dead_letter": ENVELOPE_VERSION,
            "reason": rejection.reason,
            "error": rejection.error[:MAX_ERROR_CHARS],
            "cause": cause[:MAX_ERROR_CHARS],
            "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "source": {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp_ms": record.timestamp,
            },
            "key_prefix_base64": base64.b64encode((record.key or b"")[:MAX_KEY_BYTES]).decode(),
            "prefix_base64": base64.b64encode(raw[:prefix_bytes]).decode(),
            "truncated": len(raw) > prefix_bytes,
        }
    ).encode()


class DeadLetters:
    """Sends rejected messages to the dead-letter topic, with the reason and source offset."""

    def __init__(
        self,
        producer: DeadLetterProducer,
        settings: BridgeSettings,
        stopping: Callable[[], bool],
        topic: str = DEAD_LETTER_TOPIC,
    ) -> None:
        self._producer = producer
        self._settings = settings
        self._stopping = stopping
        self._topic = topic

    async def send(self, record: ConsumerRecord, rejection: Rejection) -> None:
        """Dead-letter `record`: as it is, or as an envelope. Raises only `Stopping`."""
        source = f"{record.topic}/{record.partition}/{record.offset}"
        logger.warning("dead-lettering %s: %s: %s", source, rejection.reason, rejection.error[:200])
        headers: list[tuple[str, bytes]] = [
            (DLQ_REASON_HEADER, rejection.reason.encode()),
            (DLQ_ERROR_HEADER, rejection.error[:MAX_ERROR_CHARS].encode()),
            (DLQ_SOURCE_HEADER, source.encode()),
        ]
        value = record.value if record.value is not None else b""
        cause = await self._send_original(value, record.key, headers)
        if cause is None:
            return
        DEAD_LETTER_ENVELOPES.labels(cause.split(":", 1)[0]).inc()
        logger.warning(
            "%s cannot be dead-lettered as it is (%s): sending an envelope", source, cause
        )
        body = envelope(record, rejection, cause, self._settings.dead_letter_prefix_bytes)
        key = (record.key or b"")[:MAX_KEY_BYTES] or None
        await self._send_envelope(body, key, [*headers, (DLQ_ENVELOPE_HEADER, b"1")], source)

    async def _send_original(
        self, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> str | None:
        """None once sent; otherwise why not (`ErrorClass: message`)."""
        attempts = self._settings.dead_letter_send_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._producer.send_and_wait(
                    self._topic, value=value, key=key, headers=headers
                )
                return None
            except Exception as exc:  # any producer error: the envelope goes instead
                if not transient(exc) or attempt == attempts or self._stopping():
                    return f"{type(exc).__name__}: {exc}"
                logger.warning("dead letter not sent (%s); attempt %d again", exc, attempt + 1)
            await asyncio.sleep(min(0.5 * 2**attempt, MAX_DELAY_SECONDS))
        raise AssertionError("unreachable")

    async def _send_envelope(
        self, body: bytes, key: bytes | None, headers: list[tuple[str, bytes]], source: str
    ) -> None:
        delay = 0.5
        while True:
            try:
                await self._producer.send_and_wait(
                    self._topic, value=body, key=key, headers=headers
                )
                return
            except Exception as exc:
                if not transient(exc):
                    # The envelope is small and well formed: the broker refuses the topic
                    # itself (authorization, a policy). Keep it in the log and carry on
                    # rather than stop every partition behind one message.
                    DEAD_LETTERS_UNSENT.inc()
                    logger.error(
                        "dead letter for %s refused (%s: %s); envelope: %s",
                        source,
                        type(exc).__name__,
                        exc,
                        body.decode(),
                    )
                    return
                logger.warning("dead-letter envelope not sent (%s); retrying in %.1fs", exc, delay)
            if self._stopping():
                raise Stopping()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_SECONDS)
