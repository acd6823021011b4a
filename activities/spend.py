"""Site spend (`riskflow.config.budget`): each answer the provider charged for is counted against
the
site of its camera, per day and per month in the site's time zone, in Redis (one script per
charge, so concurrent workers never lose an increment and exactly one charge crosses each
threshold); the task builder asks where a site stands before an assessment calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources

from redis.exceptions import RedisError

from riskflow.config.budget import (
    COST_SCALE,
    PERIODS,
    BudgetVerdict,
    Period,
    SiteBudget,
    Spend,
    levels,
    period_ids,
    verdict,
)
from riskflow.config.prices import PriceTable, TokenUsage
from riskflow.config.sites import SiteConfig, site_of
from riskflow.infra.metrics import (
    SITE_BUDGET_ALERTS,
    SITE_BUDGET_USED,
    SITE_SPEND_COST,
    SITE_SPEND_TOKENS,
)
from riskflow.infra.redis import RedisClient
from riskflow.names import site_spend_key

logger = logging.getLogger(__name__)

_SCRIPT = resources.files("activities").joinpath("spend.lua").read_text(encoding="utf-8")
TTL_SECONDS: dict[Period, int] = {"day": 3 * 24 * 3600, "month": 63 * 24 * 3600}


class SpendLedger:
    """Charges answers to sites and reads their spend. `clock`: the current time (aware;
    default: the wall clock), for tests of period boundaries."""

    def __init__(
        self,
        redis: RedisClient,
        sites: list[SiteConfig],
        prices: PriceTable,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._redis = redis
        self._sites = sites
        self._prices = prices
        self._clock = clock or (lambda: datetime.now(UTC))
        self._script = redis.register_script(_SCRIPT)

    def site(self, camera_id: str, site_id: str = "") -> SiteConfig:
        """The site `site_id` (resolved once when the task was built and carried), else the
        camera's."""
        if site_id:
            found = next((site for site in self._sites if site.id == site_id), None)
            if found is not None:
                return found
        return site_of(self._sites, camera_id)

    def _keys(self, site: SiteConfig) -> list[str]:
        ids = period_ids(self._clock(), site.zone)
        return [site_spend_key(site.id, period, ids[period]) for period in PERIODS]

    async def charge(
        self, camera_id: str, model: str, usage: TokenUsage, site_id: str = ""
    ) -> None:
        """Count `usage` of `model` against the camera's site. Redis down: logged and not
        counted (the answer it paid for is not thrown away for it)."""
        tokens = usage.input_tokens + usage.output_tokens
        if tokens <= 0:
            return
        site = self.site(camera_id, site_id)
        cost_micro = round(self._prices.cost(model, usage) * COST_SCALE)
        try:
            reply = await self._script(
                keys=self._keys(site),
                args=[tokens, cost_micro, TTL_SECONDS["day"], TTL_SECONDS["month"]],
            )
        except RedisError as exc:
            logger.warning("spend of %s not counted (%d tokens): %s", site.id, tokens, exc)
            return
        SITE_SPEND_TOKENS.labels(site.id).inc(tokens)
        SITE_SPEND_COST.labels(site.id).inc(cost_micro / COST_SCALE)
        budget = site.capacity.budget
        if budget is None:
            return
        spend = {
            period: Spend(tokens=int(reply[2 * i]), cost=int(reply[2 * i + 1]) / COST_SCALE)
            for i, period in enumerate(PERIODS)
        }
        await self._observe(site, budget, spend)

    async def _observe(
        self, site: SiteConfig, budget: SiteBudget, spend: dict[Period, Spend]
    ) -> None:
        """Set the gauges, and tell operators (log and counter) the first time in a period
        that a limit is at its warning share or exhausted: a marker field in the period's hash
        (`warning:<unit>`, `exhausted:<unit>`) makes it once for all workers."""
        _gauge(site, budget, spend)
        reached = levels(budget, spend)
        if not reached:
            return
        keys = dict(zip(PERIODS, self._keys(site), strict=True))
        for period, unit, level in reached:
            try:
                first = await self._redis.hsetnx(keys[period], f"{level}:{unit}", 1)
            except RedisError as exc:
                logger.warning("budget state of %s not read: %s", site.id, exc)
                return
            if not first:
                continue
            SITE_BUDGET_ALERTS.labels(site.id, period, unit, level).inc()
            spent, limit = spend[period].of(unit), budget.limit(period, unit) or 1
            which = f"{'daily' if period == 'day' else 'monthly'} {unit}"
            if level == "warning":
                logger.warning(
                    "site %s has spent %.0f%% of its %s budget (%g of %g)",
                    site.id, 100 * spent / limit, which, spent, limit,
                )  # fmt: skip
            else:
                then = "fall back" if budget.on_exhausted == "fallback" else "stop calling"
                logger.error(
                    "site %s exhausted its %s budget (%g of %g); its assessments now %s",
                    site.id, which, spent, limit, then,
                )  # fmt: skip

    async def spend(self, site: SiteConfig) -> dict[Period, Spend]:
        """The site's spend in the current day and month (its time zone)."""
        found: dict[Period, Spend] = {}
        for period, key in zip(PERIODS, self._keys(site), strict=True):
            tokens, cost = await self._redis.hmget(key, ["tokens", "cost_micro"])
            found[period] = Spend(tokens=int(tokens or 0), cost=int(cost or 0) / COST_SCALE)
        return found

    async def standing(
        self, camera_id: str, site: SiteConfig | None = None
    ) -> tuple[SiteConfig, SiteBudget, BudgetVerdict] | None:
        """The camera's site (`site` when already resolved), its budget and where it
        stands; None when it has no budget."""
        site = site or self.site(camera_id)
        budget = site.capacity.budget
        if budget is None:
            return None
        spend = await self.spend(site)
        # Also here: a new day shows without a charge, and a site already past a threshold
        # (a restart, a lowered limit) is still told about it once.
        await self._observe(site, budget, spend)
        return site, budget, verdict(budget, spend)


def _gauge(site: SiteConfig, budget: SiteBudget, spend: dict[Period, Spend]) -> None:
    for period in PERIODS:
        for unit in ("tokens", "cost"):
            limit = budget.limit(period, unit)
            if limit is not None:
                SITE_BUDGET_USED.labels(site.id, period, unit).set(spend[period].of(unit) / limit)
