"""`riskflow oncall who / show`: who is on call, from the rosters of `oncall:`
(`riskflow.config.oncall`), in each roster's site time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from cli.common import console, settings_of
from riskflow.config.oncall import OnCall, Roster, on_call, shifts
from riskflow.config.settings import Settings
from riskflow.config.sites import site_timezone

app = typer.Typer(help="On-call rosters: who is on call now, and next.")


def _zone(settings: Settings, roster: Roster) -> ZoneInfo:
    return ZoneInfo(site_timezone(settings.sites, roster.site))


def _when(text: str | None) -> datetime:
    """`--at`: ISO 8601 with an offset (2026-12-12T03:00+08:00), else now."""
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r}") from None
    if at.tzinfo is None:
        raise typer.BadParameter("give the time with its offset, e.g. 2026-12-12T03:00+08:00")
    return at


def _local(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _name(settings: Settings, person_id: str) -> str:
    person = settings.people.by_id(person_id)
    return f"{person.name} ({person_id})" if person is not None and person.name else person_id


@app.command("who")
def who(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option(help="only this site's rosters")] = None,
    at: Annotated[str | None, typer.Option(help="ISO 8601 time with offset; default now")] = None,
) -> None:
    """Who is on call (and who is next) in each roster, at `--at` or now."""
    settings = settings_of(ctx)
    moment = _when(at)
    rosters = [r for r in settings.oncall.rosters if site in (None, r.site)]
    if not rosters:
        console.print(
            "no roster" + (f" at site {site!r}" if site else "") + " (oncall: in riskflow.yaml)"
        )
        raise typer.Exit(1)
    table = Table(title=f"on call at {moment.isoformat(timespec='minutes')}")
    for column in ("roster", "site", "on call", "by", "until", "next"):
        table.add_column(column, overflow="fold")
    for roster in rosters:
        zone = _zone(settings, roster)
        now = on_call(roster, zone, moment)
        later = on_call(roster, zone, now.until) if now is not None else None
        table.add_row(
            roster.id,
            roster.site,
            _name(settings, now.person) if now else "nobody",
            now.source if now else "-",
            _local(now.until, zone) if now else "-",
            _name(settings, later.person) if later else "-",
        )
    console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    roster_id: Annotated[str, typer.Argument(help="a roster's id")],
    days: Annotated[int, typer.Option(min=1, max=90, help="how far ahead")] = 7,
    at: Annotated[str | None, typer.Option(help="from (ISO 8601 with offset); default now")] = None,
) -> None:
    """The roster's shifts from `--at` (or now) for `--days`: who, by which layer, when."""
    settings = settings_of(ctx)
    roster = settings.oncall.roster(roster_id)
    if roster is None:
        known = ", ".join(r.id for r in settings.oncall.rosters) or "none"
        console.print(f"[red]no roster {roster_id!r} (rosters: {known})[/red]")
        raise typer.Exit(2)
    zone, start = _zone(settings, roster), _when(at)
    table = _shift_table(
        settings, roster, zone, shifts(roster, zone, start, start + timedelta(days=days))
    )
    console.print(table)


def _shift_table(settings: Settings, roster: Roster, zone: ZoneInfo, found: list[OnCall]) -> Table:
    table = Table(title=f"{roster.id} ({roster.site}, {zone.key})")
    for column in ("from", "until", "on call", "by"):
        table.add_column(column, overflow="fold")
    for shift in found:
        table.add_row(
            _local(shift.since, zone),
            _local(shift.until, zone),
            _name(settings, shift.person),
            shift.source,
        )
    return table
