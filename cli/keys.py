"""`riskflow keys ...`: the pool's state (`activities.keypool`), verification against the
provider (`activities.providers.verify`), run-time changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import typer
from rich.table import Table

from activities.keypool import KeyPool, KeyState
from activities.providers.dashscope import one_request_session
from activities.providers.route import open_routes
from activities.providers.verify import KeyVerdict, verify_keys
from activities.spend import SpendLedger
from cli.common import console, settings_of
from riskflow.config.budget import PERIODS, Period, SiteBudget, Spend, verdict
from riskflow.config.keys import KeyRing
from riskflow.config.settings import Settings
from riskflow.config.sites import DEFAULT_SITE, SiteConfig
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient, redis_client

T = TypeVar("T")

app = typer.Typer(
    help="The API key pool: status, verify, sync, enable, disable.", no_args_is_help=True
)


@contextlib.asynccontextmanager
async def open_pool(settings: Settings) -> AsyncIterator[KeyPool]:
    async with open_store(settings) as redis:
        yield KeyPool(redis, settings.keys.scheduler)


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[RedisClient]:
    redis = redis_client(Endpoints.of(settings).redis, timeout_seconds=5)
    try:
        yield redis
    finally:
        await redis.aclose()


def _run(settings: Settings, action: Callable[[KeyPool], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_pool(settings) as pool:
            return await action(pool)

    return asyncio.run(main())


def _print_status(states: list[KeyState], guard_ms: int) -> None:
    title = f"API key pool (use: last 1 s / last 60 s of limit; window guard now {guard_ms} ms)"
    table = Table(title=title)
    for column in (
        "key",
        "group",
        "use 1s",
        "use 60s",
        "in flight",
        "cooldown",
        "state",
        "leases",
        "429s",
        "errors",
    ):
        table.add_column(column, overflow="fold")
    for s in states:
        counters = s.counters
        table.add_row(
            s.key_id,
            s.quota_group or "-",
            f"{s.used_last_second}/{s.qps_limit}",
            f"{s.used_last_minute}/{s.rpm_limit}",
            f"{s.in_flight}/{s.max_concurrency}",
            f"{s.cooldown_remaining_ms / 1000:.1f}s" if s.cooldown_remaining_ms else "-",
            "enabled" if s.enabled else f"[red]{s.disabled_reason}[/red]",
            str(counters.get("granted", 0)),
            str(counters.get("rate_limited", 0)),
            str(counters.get("errors", 0) + counters.get("invalid", 0)),
        )
    console.print(table)


SiteSpends = list[tuple[SiteConfig, dict[Period, Spend]]]


def _spent(spend: Spend, budget: SiteBudget | None, period: Period, currency: str) -> str:
    """`tokens[/limit] · cost[/limit] CUR` of one period."""
    tokens_limit = budget.limit(period, "tokens") if budget else None
    cost_limit = budget.limit(period, "cost") if budget else None
    tokens = f"{spend.tokens}" + (f"/{int(tokens_limit)}" if tokens_limit else "")
    cost = f"{spend.cost:.6g}" + (f"/{cost_limit:.6g}" if cost_limit else "")
    return f"{tokens} tok · {cost} {currency}"


def _print_spend(settings: Settings, spends: SiteSpends) -> None:
    table = Table(title="Site spend (today and this month, in each site's time zone)")
    for column in ("site", "time zone", "today", "this month", "budget"):
        table.add_column(column, overflow="fold")
    currency = settings.prices.currency
    for site, spend in spends:
        budget = site.capacity.budget
        if budget is None:
            state = "-"
        else:
            standing = verdict(budget, spend)
            if standing.exhausted:
                state = f"[red]exhausted ({standing.exhausted}): {budget.on_exhausted}[/red]"
            elif standing.used_ratio >= budget.warn_ratio:
                state = f"[yellow]warning: {standing.used_ratio:.0%} used[/yellow]"
            else:
                state = f"{standing.used_ratio:.0%} used"
        day, month = (_spent(spend[p], budget, p, currency) for p in PERIODS)
        table.add_row(site.id, site.timezone, day, month, state)
    console.print(table)


async def _status(settings: Settings) -> tuple[list[KeyState], int, SiteSpends]:
    async with open_store(settings) as redis:
        pool = KeyPool(redis, settings.keys.scheduler)
        states, guard_ms = await pool.snapshot(), await pool.window_guard_ms()
        ledger = SpendLedger(redis, settings.sites, settings.prices)
        sites = [*settings.sites]
        if not any(s.id == DEFAULT_SITE.id for s in sites):
            sites.append(DEFAULT_SITE)  # cameras no site lists
        return states, guard_ms, [(site, await ledger.spend(site)) for site in sites]


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Each key: limits, use in the last second and minute, leases, cooldown, disabled reason;
    then each site's spend today and this month against its budget (`riskflow.config.budget`)."""
    settings = settings_of(ctx)
    states, guard_ms, spends = asyncio.run(_status(settings))
    _print_status(states, guard_ms)
    _print_spend(settings, spends)
    for warning in settings.capacity_warnings():
        console.print(f"[yellow]{warning}[/yellow]")


@app.command("sync")
def sync(ctx: typer.Context) -> None:
    """Push config/api_keys.yaml to the pool (add, re-limit, remove keys; no restart needed)."""
    settings = settings_of(ctx)
    _run(settings, lambda pool: pool.sync(settings.keys))
    console.print("[green]key pool synced from configuration[/green]")


@app.command("enable")
def enable(ctx: typer.Context, key_id: str) -> None:
    """Re-enable a key (after an invalid-key answer or an operator's disable)."""
    _run(settings_of(ctx), lambda pool: pool.set_disabled(key_id, None))
    console.print(f"{key_id}: enabled")


@app.command("disable")
def disable(ctx: typer.Context, key_id: str) -> None:
    """Take a key out of rotation at run time."""
    _run(settings_of(ctx), lambda pool: pool.set_disabled(key_id, "disabled by operator"))
    console.print(f"{key_id}: disabled")


async def _verify(settings: Settings) -> list[KeyVerdict]:
    ring = KeyRing.from_environment(settings.keys)
    endpoint = Endpoints.of(settings).dashscope
    loopback = "127.0.0.1" in endpoint or "localhost" in endpoint
    llm, timeout = settings.llm, settings.llm.request_timeout_seconds
    async with (
        one_request_session(trust_env=not loopback) as session,
        open_routes(settings.keys, llm.models, endpoint, session, timeout) as routes,
    ):
        return await verify_keys(settings.keys, ring, routes, llm.text_model, llm.vision_model)


@app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Send one tiny request per key and configured model, exactly as the worker sends it (JSON
    mode; the vision endpoint for the vision model); exits 1 naming each model that fails and
    why. Secrets are never shown."""
    settings = settings_of(ctx)
    rows = asyncio.run(_verify(settings))
    table = Table(title=f"keys against {Endpoints.of(settings).dashscope}")
    for column in ("key", "model", "verdict", "answer"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.key_id, row.model, row.verdict, row.answer)
    console.print(table)
    failed = [row for row in rows if row.failed]
    for row in failed:
        console.print(f"[red]FAILED[/red] model {row.model} with key {row.key_id}: {row.answer}")
    if failed:
        raise typer.Exit(1)
