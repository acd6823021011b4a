"""The answers and errors real DashScope users report, mixed at random over a run of events
(CI: 40, `make chaos`: 200) with real worker and bridge processes: every event ends assessed or
failed with a specific reason, no lease is left, the provider's limits hold, and the key whose
account refused it leaves the rotation for good."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from activities.keypool import KeyPool
from riskflow.config.settings import Settings
from riskflow.contracts import failures as E
from riskflow.infra.endpoints import Endpoints
from riskflow.names import KEYPOOL_PREFIX
from tests.chaos.harness import Cluster, scale
from tests.chaos.test_chaos import logs, run_scenario
from tests.conftest import DashScopeAdmin

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(3600)]
__all__ = ["logs"]  # the chaos suite's per-test log folder fixture


def error(status: int, body: dict[str, Any] | str, **headers: str) -> dict[str, Any]:
    return {"status": status, "body": body, "headers": headers}


ARREARAGE = {
    "code": "Arrearage",
    "message": "Access denied, please make sure your account is in good standing.",
}
# (share of requests, answer): every kind of provider answer the classifier knows.
MIX: list[tuple[float, dict[str, Any]]] = [
    (0.08, error(429, {"code": "Throttling.RateQuota", "message": "rate"}, **{"Retry-After": "1"})),
    (
        0.04,
        error(
            429,
            {"code": "Throttling.AllocationQuota", "message": "Allocated quota exceeded"},
            **{"Retry-After": "1"},
        ),
    ),
    (
        0.02,
        error(
            429,
            {"code": "Throttling", "message": "throttled"},
            **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
        ),
    ),
    (0.05, error(500, {"code": "InternalError", "message": "An internal error has occured"})),
    (0.03, error(503, "<html>Service Unavailable</html>")),
    (0.04, {"status": 200, "body": {"output": {}, "request_id": "r"}}),
    (0.03, {"drop": True}),
    (
        0.01,
        error(429, {"code": "Throttling.RateQuota", "message": "rate"}, **{"Retry-After": "-5"}),
    ),
    (0.03, error(400, {"code": "DataInspectionFailed", "message": "inappropriate content"})),
    (
        0.03,
        error(
            400, {"code": "InvalidParameter", "message": "Failed to download multimodal content"}
        ),
    ),
    (
        0.02,
        error(
            400,
            {
                "code": "InvalidParameter",
                "message": "Json mode response is not supported when enable_thinking is true",
            },
        ),
    ),
    (0.02, error(400, {"message": "an error body without a code"})),
]
SPECIFIC = (
    E.CONTENT_REJECTED,
    E.CONFIGURATION_ERROR,
    E.BAD_REQUEST,
    E.PROVIDER_ERROR,
    "no API key",
)


async def test_real_provider_answers_mix(
    settings: Settings,
    stack: Endpoints,
    client: Client,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    logs: Path,
    unique: str,
) -> None:
    await dashscope_admin.faults(
        rules=[{"key_id": "key_1", "answer": error(400, ARREARAGE)}],  # key_1's account refuses
        mix=[{"weight": weight, "answer": answer} for weight, answer in MIX],
        seed=14,
    )
    cluster = Cluster(settings, logs, unique)
    summary, codes = await run_scenario(
        "provider_mix", cluster, settings, stack, redis, client, f"p{unique}", scale(40, 200)
    )
    stats = await dashscope_admin.stats()
    summary.violations = int(stats["violations"])  # type: ignore[call-overload]
    reasons = [r async for r in failure_reasons(redis)]
    leases = [k async for k in redis.scan_iter(match=f"{KEYPOOL_PREFIX}:lease:*")]
    in_flight = sum(
        [await redis.zcard(k) async for k in redis.scan_iter(match=f"{KEYPOOL_PREFIX}:inf:*")]
    )
    states = {s.key_id: s for s in await KeyPool(redis, settings.keys.scheduler).snapshot()}
    summary.extra.update(
        leases_left=len(leases) + in_flight,
        key_1=states["key_1"].disabled_reason or "in rotation",
        requests=sum(int(k["requests"]) for k in stats["keys"].values()),  # type: ignore[union-attr]
        failure_kinds={kind: sum(kind in r for r in reasons) for kind in SPECIFIC},
        exit_codes=codes,
    )
    print(summary.line())
    assert (summary.lost, summary.duplicates, summary.violations) == (0, 0, 0)
    assert summary.assessed + summary.failed == summary.events
    assert all(any(kind in r for kind in SPECIFIC) for r in reasons), reasons
    assert len(leases) + in_flight == 0
    assert not states["key_1"].enabled and "Arrearage" in states["key_1"].disabled_reason
    assert states["key_2"].enabled


async def failure_reasons(redis: Redis) -> AsyncIterator[str]:
    """The failure reason of every failed assessment stored in Redis."""
    async for key in redis.scan_iter(match="assessment:*"):
        raw = await redis.get(key)
        if raw is not None:
            outcome = json.loads(raw)
            if outcome.get("status") == "failed":
                yield outcome["failure_reason"]
