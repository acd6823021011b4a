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
from riskflow.cli.common import console, settings_of
from riskflow.endpoints import Endpoints
from riskflow.keyconfig import KeyRing
from riskflow.redis_client import redis_client
from riskflow.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    help="The API key pool: status, verify, sync, enable, disable.", no_args_is_help=True
)


@contextlib.asynccontextmanager
async def open_pool(settings: Settings) -> AsyncIterator[KeyPool]:
    redis = redis_client(Endpoints.of(settings).redis, timeout_seconds=5)
    try:
        yield KeyPool(redis, settings.keys.scheduler)
    finally:
        await redis.aclose()


def _run(settings: Settings, action: Callable[[KeyPool], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_pool(settings) as pool:
            return await action(pool)

    return asyncio.run(main())


def _print_status(states: list[KeyState]) -> None:
    table = Table(title="API key pool (use: last 1 s / last 60 s of limit)")
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


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Each key: limits, use in the last second and minute, leases, cooldown, disabled reason."""
    states = _run(settings_of(ctx), lambda pool: pool.snapshot())
    _print_status(states)


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
