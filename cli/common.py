"""What every command module shares: the parsed settings, a console, tracing for a process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from riskflow.config.settings import Settings
from riskflow.infra.telemetry import setup_tracing

console = Console()


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root callback parsed once for this invocation."""
    settings: Settings = ctx.obj
    return settings


@contextlib.contextmanager
def traced(settings: Settings, service: str) -> Iterator[None]:
    """Tracing for one process's life; spans are flushed on the way out."""
    provider = setup_tracing(settings.tracing, service)
    try:
        yield
    finally:
        if provider is not None:
            provider.shutdown()
