"""`riskflow replay run / record`: shadow evaluation of candidate configurations on recorded
events (`workers.replay.replay`), and recording events from the live topic
(`workers.replay.record`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from cli.common import console, settings_of
from riskflow.errors import ConfigError

app = typer.Typer(help="Replay recorded events through candidate configurations.")


@app.command("run")
def replay_run(
    ctx: typer.Context,
    events: Annotated[Path, typer.Argument(help="JSONL of recorded events")],
    candidates: Annotated[Path, typer.Option(help="YAML: candidates: [{name: ..., ...}]")],
    out: Annotated[Path, typer.Option(help="Directory for report.json and report.md")] = Path(
        "replay-report"
    ),
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Stop starting at this many tokens")
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option(min=0.0, help="Stop starting at this cost")
    ] = None,
) -> None:
    """Assess every event under every candidate, without alerting; write the comparison."""
    from workers.replay.replay import Budget, replay_to_files

    settings = settings_of(ctx)
    budget = Budget(max_tokens=max_tokens, max_cost=max_cost)
    files = asyncio.run(replay_to_files(settings, events, candidates, out, budget))
    spent = files.report["budget"]
    console.print(f"wrote {files.json_path} and {files.markdown_path} ({spent})")


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """An ISO time with a zone (`2026-11-23T00:00:00+08:00`) or a span back from now: `7d`,
    `12h`, `30m`."""
    now = now or datetime.now(UTC)
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if value[-1:] in units and value[:-1].isdigit():
        return now - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value!r}: an ISO time or 7d / 12h / 30m") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"--since {value!r}: give a time zone (e.g. +08:00 or Z)")
    return parsed


@app.command("record")
def replay_record(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="ISO time with zone, or 7d / 12h / 30m")],
    out: Annotated[Path, typer.Option(help="JSONL file to write")],
    camera: Annotated[
        list[str] | None, typer.Option(help="Camera id (repeat); all if none")
    ] = None,
    include_unflagged: Annotated[
        bool, typer.Option(help="Also events the bridge would not assess")
    ] = False,
) -> None:
    """Copy events from the detection topic (and their snapshots out of Redis) into a file."""
    from workers.replay.record import record

    settings = settings_of(ctx)
    summary = asyncio.run(
        record(settings, parse_since(since), out, camera or [], include_unflagged)
    )
    console.print(f"wrote {out}: {summary}")
