"""The site's context, zones, rubric and language reach the provider, and the versions reach the
stored assessment: RiskAssessmentWorkflow on the time-skipping server with a real worker."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis
from temporalio.testing import WorkflowEnvironment

from devstack.simulate import scene_event
from riskflow.config.context import CameraContext, Rubric, SiteContext
from riskflow.config.settings import Settings
from riskflow.config.significance import CameraRules, Zone
from riskflow.config.sites import SiteConfig
from riskflow.contracts.assessment import AssessmentInput
from riskflow.contracts.events import SnapshotRef
from riskflow.infra.endpoints import Endpoints
from riskflow.levels import RiskLevel
from riskflow.names import assessment_key, camera_latest_key
from tests.conftest import DashScopeAdmin, running_worker
from workflows.assessment import RiskAssessmentWorkflow

RUBRIC = Rubric(
    levels={level: f"at plant A {level.value} means X{level.rank}" for level in RiskLevel}
)


def site_settings(settings: Settings, camera: str) -> Settings:
    context = SiteContext(
        watches="the ward corridor",
        hazards=["wet floor after cleaning"],
        zones={"stairwell": "top of the stairs, a fall there is serious"},
        rubric=RUBRIC,
        cameras={camera: CameraContext(instructions="Night shift: one nurse on duty.")},
    )
    site = SiteConfig(
        id="ward", language="zh-CN", timezone="Asia/Shanghai", cameras=[camera], context=context
    )
    zone = Zone(name="stairwell", points=[(0, 580), (400, 580), (400, 720), (0, 720)])
    cameras = {**settings.significance.cameras, camera: CameraRules(zones=[zone])}
    significance = settings.significance.model_copy(update={"cameras": cameras})
    return settings.model_copy(update={"sites": [site], "significance": significance})


async def test_context_zone_rubric_and_language_reach_the_provider_and_versions_are_stored(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    camera = f"ward-{unique}"
    await redis.set(f"snapshot:{camera}:7", b"\xff\xd8jpeg\xff\xd9")
    event = scene_event(camera, 7, datetime.now(UTC), people=2, falls=1).model_copy(
        update={"snapshot": SnapshotRef(store="redis", ref=f"snapshot:{camera}:7")}
    )
    inp = AssessmentInput(
        assessment_id=f"risk-{camera}-fall-{uuid.uuid4().hex[:8]}", situation="fall", event=event
    )
    async with running_worker(time_env.client, site_settings(settings, camera), stack, task_queue):
        result = await time_env.client.execute_workflow(
            RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=task_queue
        )
    [request] = [r for r in await dashscope_admin.requests() if camera in json.dumps(r)]
    system = request["input"]["messages"][0]["content"]
    user = json.dumps(request["input"]["messages"][1]["content"], ensure_ascii=False)
    assert "What this camera watches: the ward corridor" in system
    assert "wet floor after cleaning" in system and "Night shift: one nurse on duty." in system
    assert "stairwell = top of the stairs" in system and "zone=stairwell" in user
    assert "at plant A critical means X4" in system
    assert "Answer language: zh-CN" in system and "Simplified Chinese" in system
    assert request["endpoint"] == "vision" and request["model"] == settings.llm.vision_model
    # The local server answers in the language asked; the level stays a machine value.
    assert result.risk_level == RiskLevel.HIGH and "倒地" in result.summary
    stored = json.loads(await redis.get(assessment_key(inp.assessment_id)))
    latest = json.loads(await redis.get(camera_latest_key(camera)))
    for record in (stored, latest, result.model_dump(mode="json")):
        assert record["provenance"] == {
            "prompt_version": "v2",
            "rubric_version": RUBRIC.effective_version,
            "context_version": record["provenance"]["context_version"],
            "language": "zh-CN",
            "provider": "dashscope",
            "model": settings.llm.vision_model,
            "frame_ids": [7],
            "image_ref": f"redis:snapshot:{camera}:7",
        }
        assert record["provenance"]["context_version"].startswith("sha256:")


async def test_a_camera_of_no_site_is_assessed_in_english_with_the_default_rubric(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    camera = f"lone-{unique}"
    inp = AssessmentInput(
        assessment_id=f"risk-{camera}-person-1",
        situation="person",
        event=scene_event(camera, 1, datetime.now(UTC), people=1, falls=0),
    )
    async with running_worker(time_env.client, settings, stack, task_queue):
        result = await time_env.client.execute_workflow(
            RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=task_queue
        )
    [request] = [r for r in await dashscope_admin.requests() if camera in json.dumps(r)]
    assert "Answer language: en" in request["input"]["messages"][0]["content"]
    assert "(rubric default-1)" in request["input"]["messages"][0]["content"]
    assert result.summary == "1 people in view, 0 fallen."
    assert result.provenance.rubric_version == "default-1"
    assert result.provenance.model == settings.llm.text_model
    assert result.provenance.image_ref is None and result.provenance.frame_ids == [1]
