"""`riskflow incidents ...`: list, show, ack, resolve, dismiss, comment (the work is in
`workers.incidents.client`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.table import Table
from temporalio.client import Client

from cli.common import console, settings_of
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import IncidentState, IncidentView, OperatorAction
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient, redis_client
from workers.common.client import connect
from workers.incidents.client import Action, act, list_incidents, show_incident

T = TypeVar("T")

app = typer.Typer(help="Incidents: list, show, ack, resolve, dismiss, comment.")


def _with_redis(settings: Settings, work: Callable[[RedisClient], Awaitable[T]]) -> T:
    async def main() -> T:
        redis = redis_client(Endpoints.of(settings).redis, timeout_seconds=5)
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    return asyncio.run(main())


@app.command("list")
def list_(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option(help="site id")] = None,
    camera: Annotated[str | None, typer.Option(help="camera id")] = None,
    state: Annotated[IncidentState | None, typer.Option(help="default: the open ones")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    ids: Annotated[bool, typer.Option("--ids", help="only the ids, one a line")] = False,
) -> None:
    """Incidents, newest first. The id column is never cut, whatever the terminal's width
    (`ack`, `resolve` and `dismiss` take it); the other columns give way."""
    views = _with_redis(settings_of(ctx), lambda r: list_incidents(r, site, camera, state, limit))
    if ids:
        for v in views:
            typer.echo(v.incident_id)
        return
    table = Table(title=f"{len(views)} incident(s)")
    widest = max((len(v.incident_id) for v in views), default=2)
    table.add_column("id", no_wrap=True, min_width=widest)
    for column in ("site", "camera", "state", "severity", "level", "opened"):
        table.add_column(column)
    table.add_column("summary", overflow="ellipsis", no_wrap=True)
    for v in views:
        table.add_row(
            v.incident_id,
            v.site_id,
            v.camera_id,
            v.state.value,
            v.severity.value,
            str(v.escalation_level),
            v.opened_at.isoformat(timespec="seconds"),
            v.summary[:60],
        )
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, incident_id: str) -> None:
    """One incident and its timeline."""
    view = _with_redis(settings_of(ctx), lambda r: show_incident(r, incident_id))
    _print_view(view)


def _print_view(v: IncidentView) -> None:
    console.print(
        f"[bold]{v.incident_id}[/bold]  {v.state.value}  severity {v.severity.value}  "
        f"site {v.site_id}  camera {v.camera_id}  rule {v.rule}  level {v.escalation_level}"
    )
    if v.summary:
        console.print(v.summary)
    for entry in v.timeline:
        at = entry.at.isoformat(timespec="seconds")
        console.print(f"  {at}  {entry.kind:<12} {entry.actor:<14} {entry.detail}", markup=False)


def _operator(by: str, text: str = "", eta_minutes: int | None = None) -> OperatorAction:
    try:
        return OperatorAction(by=by, text=text, eta_minutes=eta_minutes)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from None


def _act(ctx: typer.Context, incident_id: str, action: Action, who: OperatorAction) -> None:
    settings = settings_of(ctx)

    async def work(redis: RedisClient) -> IncidentState:
        client: Client = await connect(
            Endpoints.of(settings).temporal, settings.temporal.namespace, None, settings.temporal
        )
        return await act(client, redis, incident_id, action, who)

    state = _with_redis(settings, work)
    console.print(f"{incident_id}: {state.value}")


By = Annotated[str, typer.Option("--by", help="the operator's name")]


@app.command("ack")
def ack(
    ctx: typer.Context,
    incident_id: str,
    by: By,
    eta: Annotated[
        int | None,
        typer.Option(
            "--eta",
            help="minutes until you are there: then the camera is checked again, and "
            "escalation resumes if the hazard is still present",
        ),
    ] = None,
) -> None:
    """Acknowledge: escalation stops (with --eta: until the camera is checked again)."""
    _act(ctx, incident_id, "ack", _operator(by, eta_minutes=eta))


@app.command("resolve")
def resolve(ctx: typer.Context, incident_id: str, by: By = "operator", note: str = "") -> None:
    """Resolve: the hazard is gone."""
    _act(ctx, incident_id, "resolve", _operator(by, note))


@app.command("dismiss")
def dismiss(
    ctx: typer.Context,
    incident_id: str,
    reason: Annotated[str, typer.Option(help="why it is a false alarm")],
    by: By = "operator",
) -> None:
    """Dismiss as a false alarm."""
    _act(ctx, incident_id, "dismiss", _operator(by, reason))


@app.command("comment")
def comment(ctx: typer.Context, incident_id: str, text: str, by: By = "operator") -> None:
    """Add a comment to the timeline."""
    _act(ctx, incident_id, "comment", _operator(by, text))
