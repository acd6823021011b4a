"""`riskflow dev up / down / status`: the embedded local stack (`devstack.localstack`)."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from cli.common import console, settings_of
from devstack.localstack.stack import LocalStack, ServiceStatus
from riskflow.infra.endpoints import Endpoints

app = typer.Typer(help="The embedded local stack (Temporal, Kafka protocol, Valkey, DashScope).")


def print_status(statuses: list[ServiceStatus], endpoints: Endpoints) -> None:
    table = Table(title="riskflow local stack")
    for column in ("service", "address", "started by", "pid", "health"):
        table.add_column(column)
    for s in statuses:
        health = "[green]healthy[/green]" if s.healthy else f"[red]{s.detail or 'unhealthy'}[/red]"
        owner = "riskflow dev up" if s.managed else "configured"
        table.add_row(s.name, s.address, owner, str(s.pid or "-"), health)
    console.print(table)
    if endpoints.temporal_ui:
        console.print(f"Temporal Web UI: {endpoints.temporal_ui}")


@app.command("up")
def dev_up(ctx: typer.Context) -> None:
    """Start every service that has no configured address; wait until all are healthy."""
    stack = LocalStack(settings_of(ctx))
    with console.status("starting the local stack..."):
        statuses = asyncio.run(stack.up())
    print_status(statuses, stack.endpoints)
    console.print("Operator console: riskflow console run")


@app.command("down")
def dev_down(ctx: typer.Context) -> None:
    """Stop exactly what `dev up` started."""
    stopped = LocalStack(settings_of(ctx)).down()
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command("status")
def dev_status(ctx: typer.Context) -> None:
    """Each service: address, who started it, pid, health. Exit 1 if any is unhealthy."""
    stack = LocalStack(settings_of(ctx))
    statuses = asyncio.run(stack.status())
    print_status(statuses, stack.endpoints)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)
