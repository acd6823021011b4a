"""Aggregate an assessment: Redis (`camera:{id}:latest`, `alerts:{id}`) and the results topic.

Each Redis write touches one key (and that key's guard, in its slot), so the same code runs on
one Redis and on Redis Cluster, where the public camera key names (`camera:1:latest`, `alerts:1`)
fall into different slots and no single script may touch them together. Each write is
idempotent on its own, so a retry after a partial write finishes the rest without duplicating:
the assessment's marker is SET NX; `latest` is a compare-and-set on capture time; alerts and
history are pushed once per assessment id, guarded by `{<list name>}:seen` (see aggregate.lua).
The alternative, a shared hash tag per camera (`camera:{1}:latest`), would have renamed the
keys every reader uses.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any, Protocol

from temporalio import activity

from riskflow.config.llm import AggregateSettings
from riskflow.contracts.assessment import AggregateResult, Assessment
from riskflow.infra.metrics import ASSESSMENTS, END_TO_END, CameraLabels
from riskflow.infra.redis import RedisClient
from riskflow.infra.telemetry import tracer
from riskflow.levels import RiskLevel
from riskflow.names import (
    RESULTS_TOPIC,
    assessment_key,
    camera_alerts_key,
    camera_history_key,
    camera_latest_key,
    seen_key,
)

_SCRIPT = resources.files("activities").joinpath("aggregate.lua").read_text(encoding="utf-8")


class ResultPublisher(Protocol):
    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> object: ...


def history_line(assessment: Assessment) -> str:
    return (
        f"{assessment.captured_at.isoformat()} {assessment.situation}: "
        f"{assessment.risk_level} ({assessment.risk_score}) {assessment.summary}"
    )


class AggregateActivities:
    def __init__(
        self,
        redis: RedisClient,
        producer: ResultPublisher,
        settings: AggregateSettings,
        camera_label: CameraLabels | None = None,
    ) -> None:
        self._redis = redis
        self._camera_label = camera_label or CameraLabels()
        self._producer = producer
        self._settings = settings

    def _alerts(self, assessment: Assessment) -> bool:
        level = assessment.risk_level
        return level is not None and level.rank >= RiskLevel(self._settings.alert_min_level).rank

    @activity.defn(name="aggregate")
    async def aggregate(self, assessment: Assessment) -> AggregateResult:
        payload = assessment.model_dump_json()
        camera = assessment.camera_id
        assessed = assessment.status == "assessed"
        with tracer().start_as_current_span("redis.aggregate", attributes={"camera": camera}):
            first, updated, alerted = await self._write(assessment, payload, assessed)
        # At-least-once on the topic: a retried activity may publish again; consumers dedupe
        # on assessment_id.
        with tracer().start_as_current_span("kafka.publish_result"):
            await self._producer.send_and_wait(
                RESULTS_TOPIC, value=payload.encode(), key=camera.encode()
            )
        if first:
            level = assessment.risk_level.value if assessment.risk_level else "none"
            label = self._camera_label(camera)
            ASSESSMENTS.labels(label, assessment.status, level).inc()
            END_TO_END.labels(label).observe(time.time() - assessment.captured_ms / 1000)
        else:
            activity.logger.info("assessment %s was already aggregated", assessment.assessment_id)
        return AggregateResult(latest_updated=bool(updated), alerted=bool(alerted), published=True)

    async def _write(
        self, assessment: Assessment, payload: str, assessed: bool
    ) -> tuple[bool, bool, bool]:
        """(first time this assessment was aggregated, latest written, alert pushed).

        One pipeline, not a transaction: on one Redis it is one round trip on one connection;
        on a Cluster the client sends each node its share. The scripts go as EVAL (the server
        caches them by digest), which a cluster pipeline can route by their one declared slot
        and which never meets NOSCRIPT after a failover."""
        cfg = self._settings
        camera = assessment.camera_id
        alert = assessed and self._alerts(assessment)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(
                assessment_key(assessment.assessment_id),
                payload,
                nx=True,
                ex=cfg.assessment_ttl_seconds,
            )
            if assessed:
                latest = camera_latest_key(camera)
                ttl = cfg.camera_keys_ttl_seconds
                pipe.eval(_SCRIPT, 1, latest, "latest", payload, assessment.captured_ms, ttl)
                line = history_line(assessment)
                self._push_once(
                    pipe, camera_history_key(camera), cfg.history_max_len, assessment, line
                )
            if alert:
                self._push_once(
                    pipe, camera_alerts_key(camera), cfg.alerts_max_len, assessment, payload
                )
            replies = await pipe.execute()
        updated = assessed and replies[1] == 1
        alerted = alert and replies[3] == 1
        return bool(replies[0]), updated, alerted

    def _push_once(
        self, pipe: Any, list_key: str, max_len: int, assessment: Assessment, entry: str
    ) -> None:
        """Queue on `pipe`: push `entry` to the head of `list_key` unless this assessment
        already did (the reply is 1 when pushed, else 0)."""
        cfg = self._settings
        pipe.eval(
            _SCRIPT,
            2,
            list_key,
            seen_key(list_key),
            "push_once",
            assessment.assessment_id,
            entry,
            max_len,
            cfg.assessment_ttl_seconds,
            cfg.camera_keys_ttl_seconds,
        )
