"""Site budgets (`riskflow.config.budget`): tokens and cost per day and month in the site's time
zone, charged with what the provider reported, on one Redis and on a Redis Cluster; at the
warning share one warning, at 100% the site falls back to its chain's last entry or stops
calling; `riskflow keys status` shows the spend. Pure rules first, then real Valkey, the
time-skipping server, a real worker and the local DashScope server."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from pydantic import ValidationError
from redis.asyncio import Redis
from temporalio.testing import WorkflowEnvironment

from activities.spend import SpendLedger
from riskflow.config.budget import SiteBudget, Spend, levels, period_ids, verdict
from riskflow.config.capacity import FailoverStep, SiteCapacity
from riskflow.config.loader import load_settings
from riskflow.config.prices import Price, PriceTable, TokenUsage
from riskflow.config.replay import ReplaySettings
from riskflow.config.settings import Settings
from riskflow.config.sites import SiteConfig
from riskflow.errors import ConfigError
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient
from riskflow.levels import RiskLevel
from tests.conftest import CONFIG, DashScopeAdmin, cli_env
from tests.test_failover import _fall, _run
from tests.test_first_attempt import CONFIG as INCIDENTS
from tests.test_incident_workflow import fall, incident_worker, open_incident
from tests.test_incident_workflow import until as until_view

SHANGHAI = "Asia/Shanghai"
PRICES = PriceTable(models={"qwen-plus": Price(input_per_million=2.0, output_per_million=8.0)})


def _spend(day: tuple[int, float], month: tuple[int, float]) -> dict[Any, Spend]:
    return {
        "day": Spend(tokens=day[0], cost=day[1]),
        "month": Spend(tokens=month[0], cost=month[1]),
    }


# -- pure rules -------------------------------------------------------------------------------


def test_a_day_and_a_month_start_at_the_sites_midnight() -> None:
    zone = SiteConfig(id="s", timezone=SHANGHAI).zone
    assert period_ids(datetime(2026, 11, 30, 15, 59, tzinfo=UTC), zone) == {
        "day": "2026-11-30",
        "month": "2026-11",
    }
    # 16:00 UTC is midnight in Shanghai: a new day and a new month there, not yet in UTC.
    assert period_ids(datetime(2026, 11, 30, 16, 0, tzinfo=UTC), zone) == {
        "day": "2026-12-01",
        "month": "2026-12",
    }


def test_the_verdict_names_the_first_limit_reached_and_the_highest_share() -> None:
    budget = SiteBudget(daily_tokens=1000, monthly_cost=10.0)
    within = verdict(budget, _spend((500, 1.0), (5000, 4.0)))
    assert (within.used_ratio, within.exhausted) == (0.5, "")
    over = verdict(budget, _spend((400, 1.0), (9000, 10.5)))
    assert over.exhausted == "monthly cost 10.5 of 10" and over.used_ratio == 1.05
    assert verdict(SiteBudget(monthly_tokens=10**10), _spend((10**9, 1e6), (10**9, 1e6))) == (
        verdict(budget, _spend((0, 0), (0, 0))).model_copy(update={"used_ratio": 0.1})
    )


def test_each_limit_is_below_at_its_warning_share_or_exhausted() -> None:
    budget = SiteBudget(daily_tokens=1000, monthly_cost=5.0, warn_ratio=0.8)
    assert levels(budget, _spend((790, 0), (790, 3.9))) == []
    assert levels(budget, _spend((800, 0), (800, 4.0))) == [
        ("day", "tokens", "warning"),
        ("month", "cost", "warning"),
    ]
    assert levels(budget, _spend((1000, 0), (5000, 1.0))) == [("day", "tokens", "exhausted")]


def test_over_budget_the_chain_is_its_last_entry_or_text_only() -> None:
    cheap = FailoverStep(text_only=True, text_model="qwen-turbo")
    chain = [FailoverStep(quota_groups=["a"]), cheap]
    assert SiteCapacity(failover=chain).over_budget_chain("1") == [cheap]
    assert SiteCapacity().over_budget_chain("1") == [FailoverStep(text_only=True)]


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"daily_tokens": 0}, "greater than 0"),
        ({"warn_ratio": 1.2}, "less than 1"),
        ({"on_exhausted": "pause"}, "'fallback' or 'stop'"),
        ({"daily_token": 5}, "Extra inputs are not permitted"),
        ({}, "a budget needs at least one of"),
        ({"daily_tokens": True}, "valid integer"),
        ({"daily_cost": float("inf")}, "finite number"),
    ],
)
def test_a_bad_budget_is_refused_with_its_reason(budget: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SiteConfig.model_validate({"id": "s", "capacity": {"budget": budget}})


def test_prices_moved_out_of_replay_with_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="moved to the top-level `prices:`"):
        ReplaySettings.model_validate({"prices": {}})
    usage = TokenUsage(input_tokens=1_000_000, output_tokens=500_000)
    assert PRICES.cost("qwen-plus", usage) == 6.0 and PRICES.cost("unknown", usage) == 0.0


# -- the ledger on real Valkey (one server, then a cluster) -----------------------------------


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_concurrent_charges_add_up_exactly_and_cross_each_threshold_once(
    store: RedisClient, unique: str
) -> None:
    site = SiteConfig(
        id=f"s-{unique}",
        timezone=SHANGHAI,
        cameras=["c1"],
        capacity=SiteCapacity(budget=SiteBudget(daily_tokens=10_000, daily_cost=1.0)),
    )
    ledger = SpendLedger(store, [site], PRICES)
    before = {
        (unit, level): _sample(
            "riskflow_site_budget_alerts_total", site=site.id, period="day", unit=unit, level=level
        )
        for unit in ("tokens", "cost")
        for level in ("warning", "exhausted")
    }
    usage = TokenUsage(input_tokens=200, output_tokens=50)  # 250 tokens, 0.0008 CNY
    await asyncio.gather(*(ledger.charge("c1", "qwen-plus", usage) for _ in range(60)))
    spend = await ledger.spend(site)
    assert spend["day"] == Spend(tokens=15_000, cost=0.048) == spend["month"]
    for (unit, level), was in before.items():
        now = _sample(
            "riskflow_site_budget_alerts_total", site=site.id, period="day", unit=unit, level=level
        )
        # tokens: 80% and 100% each crossed by one charge; cost (4.8% used): neither.
        assert now - was == (1 if unit == "tokens" else 0)
    standing = await ledger.standing("c1")
    assert standing is not None and standing[2].exhausted == "daily tokens 15000 of 10000"
    assert _sample(
        "riskflow_site_budget_used_ratio", site=site.id, period="day", unit="tokens"
    ) == pytest.approx(1.5)


async def test_a_site_already_past_its_warning_share_is_told_once_per_period(
    store: RedisClient, unique: str
) -> None:
    """Spend reached 85% before this worker (or this limit) existed: the first look tells the
    operators, every later look and charge does not."""
    budget = SiteBudget(daily_tokens=1000)
    site = SiteConfig(id=f"s-{unique}", cameras=["c1"], capacity=SiteCapacity(budget=budget))
    await SpendLedger(store, [site.model_copy(update={"capacity": SiteCapacity()})], PRICES).charge(
        "c1", "qwen-plus", TokenUsage(input_tokens=850)
    )
    ledger = SpendLedger(store, [site], PRICES)
    labels = {"site": site.id, "period": "day", "unit": "tokens", "level": "warning"}
    was = _sample("riskflow_site_budget_alerts_total", **labels)
    for _ in range(3):
        assert await ledger.standing("c1") is not None
    await ledger.charge("c1", "qwen-plus", TokenUsage(input_tokens=10))
    assert _sample("riskflow_site_budget_alerts_total", **labels) - was == 1


async def test_a_new_local_day_starts_from_nothing_and_the_month_goes_on(
    store: RedisClient, unique: str
) -> None:
    site = SiteConfig(id=f"s-{unique}", timezone=SHANGHAI, cameras=["c1"])
    now = [datetime(2026, 11, 10, 15, 59, tzinfo=UTC)]  # 23:59 in Shanghai
    ledger = SpendLedger(store, [site], PRICES, clock=lambda: now[0])
    await ledger.charge("c1", "qwen-plus", TokenUsage(input_tokens=100))
    now[0] = datetime(2026, 11, 10, 16, 1, tzinfo=UTC)  # 00:01 on the 11th there
    await ledger.charge("c1", "qwen-plus", TokenUsage(input_tokens=30))
    spend = await ledger.spend(site)
    assert (spend["day"].tokens, spend["month"].tokens) == (30, 130)
    # A camera no site lists is charged to the default site, never lost.
    await ledger.charge("elsewhere", "unpriced-model", TokenUsage(output_tokens=7))
    default = (await ledger.spend(ledger.site("elsewhere")))["day"]
    assert default.tokens >= 7 and default.cost >= 0


# -- through the workflows ------------------------------------------------------------------


def _budgeted(settings: Settings, camera: str, budget: SiteBudget, chain: list[Any]) -> Settings:
    site = SiteConfig(
        id=f"site-{camera}",
        timezone=SHANGHAI,
        cameras=[camera],
        capacity=SiteCapacity(failover=chain, budget=budget),
    )
    return settings.model_copy(update={"sites": [site], "prices": PRICES})


async def test_over_budget_a_site_falls_back_to_its_last_entry_marked_degraded(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """The first fall is assessed as usual and spends more than the day's one token; the
    next one goes to the chain's last entry (text-only, qwen-turbo) and says so."""
    camera = f"bud-{unique}"
    chain = [FailoverStep(), FailoverStep(text_only=True, text_model="qwen-turbo")]
    budgeted = _budgeted(settings, camera, SiteBudget(daily_tokens=1), chain)
    first = await _run(time_env, budgeted, stack, task_queue, await _fall(redis, camera))
    assert first.status == "assessed" and not first.degraded
    assert first.provenance.image_ref is not None
    second_in = (await _fall(redis, camera)).model_copy(
        update={"assessment_id": f"risk-{camera}-fall-2"}
    )
    second = await _run(time_env, budgeted, stack, task_queue, second_in)
    assert second.status == "assessed" and second.degraded
    assert (second.provenance.model, second.provenance.image_ref) == ("qwen-turbo", None)
    last = (await dashscope_admin.requests())[-1]
    assert (last["endpoint"], last["model"]) == ("text", "qwen-turbo")


async def test_over_budget_a_stopping_site_makes_no_call_and_says_why(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    camera = f"bud-stop-{unique}"
    budget = SiteBudget(daily_cost=0.001, on_exhausted="stop")
    budgeted = _budgeted(settings, camera, budget, [])
    ledger = SpendLedger(redis, budgeted.sites, PRICES)
    await ledger.charge(camera, "qwen-plus", TokenUsage(input_tokens=500))  # 0.001 CNY
    result = await _run(time_env, budgeted, stack, task_queue, await _fall(redis, camera))
    assert result.status == "failed" and result.llm_attempts == 0
    assert (
        result.failure_reason == "not assessed: site budget exhausted (daily cost 0.001 of 0.001)"
    )
    assert await dashscope_admin.requests() == []


async def test_an_incident_of_a_stopped_site_still_opens_and_notifies(
    time_env: WorkflowEnvironment,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    task_queue: str,
    unique: str,
) -> None:
    """The incident's first attempt (`workflows.loop.first_attempt`) honours the budget too: no
    call, the failed assessment recorded, and the fall still reaches the operators."""
    camera = f"bud-inc-{unique}"
    budgeted = _budgeted(settings, camera, SiteBudget(daily_tokens=10, on_exhausted="stop"), [])
    await SpendLedger(redis, budgeted.sites, PRICES).charge(
        camera, "qwen-plus", TokenUsage(input_tokens=10)
    )
    async with incident_worker(time_env.client, budgeted, stack, task_queue) as sent:
        handle = await open_incident(sent, time_env.client, task_queue, fall(camera, 1), INCIDENTS)
        view = await until_view(handle, lambda v: v.steps_sent == ["L0"])
    assert view.assessments == 1 and view.severity == RiskLevel.HIGH
    assert sent.keys() == ["L0:ops-group"]
    assert await dashscope_admin.requests() == []


async def test_keys_status_shows_each_sites_spend_against_its_budget(
    settings: Settings, redis: Redis, unique: str, tmp_path: Path
) -> None:
    camera = f"bud-cli-{unique}"
    budgeted = _budgeted(settings, camera, SiteBudget(daily_tokens=1000, monthly_tokens=10**6), [])
    await SpendLedger(redis, budgeted.sites, PRICES).charge(
        camera, "qwen-plus", TokenUsage(input_tokens=850)
    )
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    site = budgeted.sites[0].model_dump(mode="json", exclude_defaults=True)
    (config / "sites.yaml").write_text(yaml.safe_dump({"sites": [site]}))
    env = {**cli_env(settings), "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "--config-dir", str(config), "keys", "status",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert f"site-{camera}" in text and "850/1000 tok" in text and "warning: 85% used" in text


def test_a_chain_naming_an_unknown_quota_group_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    site = {"id": "s", "cameras": ["1"], "capacity": {"failover": [{"quota_groups": ["nope"]}]}}
    (config / "sites.yaml").write_text(yaml.safe_dump({"sites": [site]}))
    with pytest.raises(ConfigError, match=r"quota groups \['nope'\] that api_keys.yaml"):
        load_settings(config)


def test_budgets_that_would_not_cap_spending_are_pointed_out(settings: Settings) -> None:
    budget = SiteBudget(daily_cost=1.0)  # fallback, no chain; qwen-vl-plus has no price here
    budgeted = _budgeted(settings, "cam", budget, [])
    warnings = budgeted.capacity_warnings()
    assert len(warnings) == 2
    assert "no price for ['qwen-vl-plus']" in warnings[0] and "count 0" in warnings[0]
    assert "on_exhausted: stop" in warnings[1]
    priced = PRICES.model_copy(
        update={"models": {**PRICES.models, "qwen-vl-plus": PRICES.models["qwen-plus"]}}
    )
    stopping = _budgeted(settings, "cam", budget.model_copy(update={"on_exhausted": "stop"}), [])
    assert stopping.model_copy(update={"prices": priced}).capacity_warnings() == []
