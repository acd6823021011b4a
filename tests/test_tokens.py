"""Tokens per minute: the pool reserves a call's estimated tokens at the grant against its
key's and quota group's limits and settles them with the provider's count (`store`: single
Valkey and Cluster); at a group's token limit, large vision prompts wait in the pool and the
provider refuses none."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime

from prometheus_client import REGISTRY
from redis.asyncio import Redis
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from devstack.simulate import scene_event
from riskflow.config.context import SiteContext
from riskflow.config.keys import QuotaGroupConfig
from riskflow.config.settings import Settings
from riskflow.config.sites import SiteConfig
from riskflow.contracts.assessment import AssessmentInput
from riskflow.contracts.events import SnapshotRef
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient
from tests.conftest import DashScopeAdmin, eventually, running_worker
from tests.test_keypool import keys_config, pool_for
from workflows.assessment import RiskAssessmentWorkflow


async def test_a_keys_token_limit_holds_reservations_and_settles_them(store: RedisClient) -> None:
    pool = await pool_for(
        store, keys_config({"key_id": "k", "qps_limit": 100, "rpm_limit": 1000, "tpm_limit": 1000})
    )
    first, second = (await pool.acquire(tokens=400)).lease, (await pool.acquire(tokens=400)).lease
    assert first is not None and second is not None
    full = await pool.acquire(tokens=400)
    assert full.lease is None and full.reason == "tpm" and full.retry_after_seconds > 50
    assert (await pool.stamp(first.lease_id)).granted
    await pool.release(first.lease_id, "ok", tokens_in=80, tokens_out=20)  # 100 of 400 used
    third = (await pool.acquire(tokens=400)).lease  # 100 + 400 + 400 <= 1000
    assert third is not None
    await pool.release(second.lease_id, "unused")  # never sent: its 400 come back
    assert (await pool.acquire(tokens=400)).lease is not None
    assert (await pool.acquire(tokens=0)).lease is not None  # no estimate: no token check


async def test_a_groups_token_limit_spans_its_keys(store: RedisClient) -> None:
    config = keys_config(
        {"key_id": "a", "qps_limit": 100, "rpm_limit": 1000, "quota_group": "acct"},
        {"key_id": "b", "qps_limit": 100, "rpm_limit": 1000, "quota_group": "acct"},
        groups={"acct": {"qps_limit": 100, "rpm_limit": 1000, "tpm_limit": 900}},
    )
    pool = await pool_for(store, config)
    leases = [(await pool.acquire(tokens=300)).lease for _ in range(3)]
    assert all(leases) and {lease.key_id for lease in leases if lease} == {"a", "b"}
    full = await pool.acquire(tokens=300)
    assert full.lease is None and full.reason == "group_tpm"


def key_waits(reason: str) -> float:
    return REGISTRY.get_sample_value("riskflow_keypool_waits_total", {"reason": reason}) or 0.0


GROUP_TPM = 12_000
ASSESSMENTS = 5


def one_account(settings: Settings, cameras: list[str]) -> Settings:
    """Both keys on one account with a token limit; a site whose long context makes each
    vision prompt about 2,800 tokens as the provider counts them (1,280 of them the image)."""
    keys = [k.model_copy(update={"quota_group": "acct"}) for k in settings.keys.api_keys]
    group = QuotaGroupConfig(qps_limit=50, rpm_limit=3000, tpm_limit=GROUP_TPM)
    update = {"api_keys": keys, "quota_groups": {"acct": group}}
    key_config = settings.keys.model_copy(update=update)
    text = "the loading bay " * 120
    context = SiteContext(watches=text, instructions=text, hazards=[text[:400]] * 5)
    site = SiteConfig(id="bay", cameras=cameras, context=context)
    return settings.model_copy(update={"keys": key_config, "sites": [site]})


async def test_large_vision_prompts_at_a_groups_token_limit_get_no_provider_429(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """Five prompts of ~2,800 tokens do not fit in 12,000 a minute: the pool holds the rest
    back (waits for `group_tpm`), and the provider counts 0 token-limit refusals."""
    limits = {"qps": 50, "rpm": 3000}
    await dashscope_admin.post_limits(
        keys={"key_1": limits, "key_2": limits},
        groups={"acct": {**limits, "tpm": GROUP_TPM}},
        key_groups={"key_1": "acct", "key_2": "acct"},
    )
    cameras = [f"bay{i}-{unique}" for i in range(ASSESSMENTS)]
    before = key_waits("group_tpm")
    handles: list[WorkflowHandle[RiskAssessmentWorkflow, object]] = []
    async with running_worker(client, one_account(settings, cameras), stack, task_queue):
        for camera in cameras:
            await redis.set(f"snapshot:{camera}:1", b"\xff\xd8" + b"jpeg" * 5000 + b"\xff\xd9")
            event = scene_event(camera, 1, datetime.now(UTC), people=2, falls=1).model_copy(
                update={"snapshot": SnapshotRef(store="redis", ref=f"snapshot:{camera}:1")}
            )
            inp = AssessmentInput(
                assessment_id=f"risk-{camera}-{uuid.uuid4().hex[:6]}", situation="fall", event=event
            )
            handles.append(
                await client.start_workflow(
                    RiskAssessmentWorkflow.run, inp, id=inp.assessment_id, task_queue=task_queue
                )
            )

        async def held_back_after_one_answer() -> bool:
            if key_waits("group_tpm") <= before:
                return False
            states = [(await h.describe()).status for h in handles]
            return WorkflowExecutionStatus.COMPLETED in states

        await eventually(held_back_after_one_answer, within=60)
        stats = await dashscope_admin.stats()
        for handle in handles:
            with contextlib.suppress(RPCError):  # one may have completed meanwhile
                await handle.terminate("test over")
    group = stats["groups"]["acct"]  # type: ignore[index]
    assert stats["token_violations"] == 0 and stats["violations"] == 0
    assert 0 < group["tokens"] <= GROUP_TPM and group["requests"] < ASSESSMENTS
