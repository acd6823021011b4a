"""Aggregate an assessment: Redis (`camera:{id}:latest`, `alerts:{id}`) and the results topic."""

from __future__ import annotations

import time
from importlib import resources
from typing import Protocol

from redis.asyncio import Redis
from temporalio import activity

from riskflow.metrics import ASSESSMENTS, END_TO_END, CameraLabels
from riskflow.models import AggregateResult, Assessment, RiskLevel
from riskflow.names import (
    RESULTS_TOPIC,
    assessment_key,
    camera_alerts_key,
    camera_history_key,
    camera_latest_key,
)
from riskflow.settings import AggregateSettings
from riskflow.telemetry import tracer

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
        redis: Redis,
        producer: ResultPublisher,
        settings: AggregateSettings,
        camera_label: CameraLabels | None = None,
    ) -> None:
        self._redis = redis
        self._camera_label = camera_label or CameraLabels()
        self._producer = producer
        self._settings = settings
        self._script = redis.register_script(_SCRIPT)

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

    async def _write(self, assessment: Assessment, payload: str, assessed: bool) -> list[int]:
        camera = assessment.camera_id
        reply: list[int] = await self._script(
            keys=[
                assessment_key(assessment.assessment_id),
                camera_latest_key(camera),
                camera_alerts_key(camera),
                camera_history_key(camera),
            ],
            args=[
                payload,
                assessment.captured_ms,
                int(assessed),
                int(assessed and self._alerts(assessment)),
                self._settings.alerts_max_len,
                history_line(assessment),
                self._settings.history_max_len,
                self._settings.assessment_ttl_seconds,
            ],
        )
        return reply
