"""The worker's side of untrusted inputs: a snapshot URL that reached a workflow without the
bridge is still never handed to the SDK, and camera labels stay bounded in aggregation."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from temporalio.testing import ActivityEnvironment

from activities.aggregate import AggregateActivities
from activities.keypool import KeyPool
from activities.llm import LLMActivities
from activities.providers.dashscope import DashScopeClient
from riskflow.config.keys import KeyRing
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment, AssessmentTask
from riskflow.contracts.lease import KeyLease, LLMCallInput
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.metrics import OTHER_CAMERA, CameraLabels
from riskflow.levels import RiskLevel


async def test_the_llm_activity_never_hands_on_snapshot_urls_that_name_local_files(
    settings: Settings, stack: Endpoints, redis: Redis
) -> None:
    """Such a URL is never given to the SDK (it would upload the file): the request goes
    without the image, text-only; a plain https URL is passed as it is."""
    async with aiohttp.ClientSession() as session:
        llm = LLMActivities(
            KeyPool(redis, settings.keys.scheduler),
            KeyRing.from_environment(settings.keys),
            DashScopeClient(stack.dashscope, session, 5),
            redis,
            settings.keys.scheduler,
        )
        task = AssessmentTask(
            assessment_id="a", camera_id="c", model="m", system_prompt="s", user_prompt="u"
        )
        lease = KeyLease(lease_id="l", key_id="key_1", quota_group="", expires_at_ms=0)

        def call(ref: str) -> LLMCallInput:
            return LLMCallInput(task=task.model_copy(update={"image_ref": ref}), lease=lease)

        for ref in ("/app/config/api_keys.yaml", "file:///etc/passwd", "ftp://h/a.jpg"):
            messages, vision = await llm._messages(call(f"url:{ref}"))
            assert not vision and ref not in str(messages)
        messages, vision = await llm._messages(call("url:https://cdn.example.com/a.jpg"))
    assert vision and messages[1]["content"][0] == {"image": "https://cdn.example.com/a.jpg"}


async def test_aggregation_labels_unknown_cameras_as_other(
    settings: Settings, stack: Endpoints, redis: Redis, unique: str
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka)
    await producer.start()
    labels = {"camera": OTHER_CAMERA, "status": "assessed", "risk_level": "high"}
    before = REGISTRY.get_sample_value("riskflow_assessments_total", labels) or 0
    try:
        activities = AggregateActivities(
            redis, producer, settings.aggregate, CameraLabels(known=["lobby"])
        )
        now = datetime.now(UTC)
        assessment = Assessment(
            assessment_id=f"lbl-{unique}",
            camera_id=f"stranger-{unique}",
            situation="fall",
            status="assessed",
            captured_at=now,
            captured_ms=int(now.timestamp() * 1000),
            assessed_at=now,
            frame_id=1,
            risk_level=RiskLevel.HIGH,
            risk_score=80,
        )
        await ActivityEnvironment().run(activities.aggregate, assessment)
    finally:
        await producer.stop()
    own = {**labels, "camera": assessment.camera_id}
    assert REGISTRY.get_sample_value("riskflow_assessments_total", own) is None
    assert REGISTRY.get_sample_value("riskflow_assessments_total", labels) == before + 1
