"""Both providers run the same workflow (DashScope's native API and the OpenAI-compatible one,
on the local server's two routes): a text assessment, a vision assessment with a snapshot, and
the provenance names the provider and model that answered."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from temporalio.testing import WorkflowEnvironment

from devstack.simulate import scene_event
from riskflow.config.keys import Provider
from riskflow.config.llm import ProviderModels
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment, AssessmentInput
from riskflow.contracts.events import SnapshotRef
from riskflow.infra.endpoints import Endpoints
from riskflow.levels import RiskLevel
from tests.conftest import DashScopeAdmin, running_worker
from workflows.assessment import RiskAssessmentWorkflow

PROVIDERS: list[Provider] = ["dashscope", "openai"]


def on_provider(settings: Settings, provider: Provider, **models: str) -> Settings:
    """Every key on `provider` (base URL: the local server's root for it); `models` per provider."""
    keys = [key.model_copy(update={"provider": provider}) for key in settings.keys.api_keys]
    llm = settings.llm.model_copy(update={"models": {provider: ProviderModels(**models)}})
    return settings.model_copy(
        update={"keys": settings.keys.model_copy(update={"api_keys": keys}), "llm": llm}
    )


async def _assess(
    env: WorkflowEnvironment, settings: Settings, stack: Endpoints, queue: str, inp: AssessmentInput
) -> Assessment:
    async with running_worker(env.client, settings, stack, queue):
        return await env.client.execute_workflow(
            RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=queue
        )


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_text_assessment_on_each_provider(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
    provider: Provider,
) -> None:
    camera = f"text-{provider}-{unique}"
    inp = AssessmentInput(
        assessment_id=f"risk-{camera}-person-1",
        situation="person",
        event=scene_event(camera, 1, datetime.now(UTC), people=6, falls=0),
    )
    result = await _assess(time_env, on_provider(settings, provider), stack, task_queue, inp)
    [request] = [r for r in await dashscope_admin.requests() if camera in json.dumps(r)]
    assert request["api"] == provider and request["endpoint"] == "text"
    assert result.risk_level == RiskLevel.MEDIUM
    provenance = result.provenance
    assert (provenance.provider, provenance.model) == (provider, settings.llm.text_model)
    assert provenance.image_ref is None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_vision_assessment_with_a_snapshot_on_each_provider(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
    provider: Provider,
) -> None:
    camera = f"vision-{provider}-{unique}"
    await redis.set(f"snapshot:{camera}:3", b"\xff\xd8jpeg\xff\xd9")
    event = scene_event(camera, 3, datetime.now(UTC), people=2, falls=1).model_copy(
        update={"snapshot": SnapshotRef(store="redis", ref=f"snapshot:{camera}:3")}
    )
    inp = AssessmentInput(
        assessment_id=f"risk-{camera}-fall-{uuid.uuid4().hex[:8]}", situation="fall", event=event
    )
    result = await _assess(time_env, on_provider(settings, provider), stack, task_queue, inp)
    [request] = [r for r in await dashscope_admin.requests() if camera in json.dumps(r)]
    assert request["api"] == provider and request["endpoint"] == "vision"
    assert "data:image/jpeg;base64," in json.dumps(request)
    assert result.risk_level == RiskLevel.HIGH
    provenance = result.provenance
    assert (provenance.provider, provenance.model) == (provider, settings.llm.vision_model)
    assert provenance.image_ref == f"redis:snapshot:{camera}:3"


async def test_the_models_configured_for_a_provider_are_asked_and_recorded(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """A vLLM or Ollama server names its own models: the keys' provider decides the model."""
    camera = f"vllm-{unique}"
    inp = AssessmentInput(
        assessment_id=f"risk-{camera}-person-1",
        situation="person",
        event=scene_event(camera, 1, datetime.now(UTC), people=1, falls=0),
    )
    vllm = on_provider(settings, "openai", text_model="Qwen/Qwen2.5-7B-Instruct")
    result = await _assess(time_env, vllm, stack, task_queue, inp)
    [request] = [r for r in await dashscope_admin.requests() if camera in json.dumps(r)]
    assert request["model"] == "Qwen/Qwen2.5-7B-Instruct"
    provenance = result.provenance
    assert (provenance.provider, provenance.model) == ("openai", "Qwen/Qwen2.5-7B-Instruct")
