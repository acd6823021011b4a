"""The `riskflow` command. Settings are parsed here, once, and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from riskflow import cli_demo, cli_keys, cli_pipeline
from riskflow.endpoints import Endpoints
from riskflow.errors import RiskflowError
from riskflow.events import DetectionEvent
from riskflow.kafka import ensure_topics
from riskflow.localstack.stack import LocalStack, ServiceStatus
from riskflow.settings import Settings, load_settings
from riskflow.telemetry import setup_logging, setup_tracing

app = typer.Typer(
    help="riskflow: camera detections -> durable, rate-limited LLM risk assessments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dev = typer.Typer(help="The embedded local stack (Temporal, Kafka protocol, Valkey, DashScope).")
topics = typer.Typer(help="Kafka topics.")
worker = typer.Typer(help="The Temporal worker.")
bridge = typer.Typer(help="The Kafka -> Temporal bridge.")
edge = typer.Typer(help="The detection edge (needs the detect extra).")
app.add_typer(dev, name="dev", no_args_is_help=True)
app.add_typer(topics, name="topics", no_args_is_help=True)
app.add_typer(cli_keys.app, name="keys")
app.add_typer(worker, name="worker", no_args_is_help=True)
app.add_typer(bridge, name="bridge", no_args_is_help=True)
app.add_typer(edge, name="edge", no_args_is_help=True)
app.add_typer(cli_pipeline.app, name="pipeline", no_args_is_help=True)
app.command("demo")(cli_demo.demo)
console = Console()


@app.callback()
def _load(
    ctx: typer.Context,
    config_dir: Annotated[
        Path | None, typer.Option(help="Directory of riskflow.yaml and api_keys.yaml")
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    logging.basicConfig(level=log_level.upper())  # until the settings say the format
    settings = load_settings(config_dir)
    setup_logging(log_level, settings.log_format)
    ctx.obj = settings


@contextlib.contextmanager
def traced(settings: Settings, service: str) -> Iterator[None]:
    """Tracing for one process's life; spans are flushed on the way out."""
    provider = setup_tracing(settings.tracing, service)
    try:
        yield
    finally:
        if provider is not None:
            provider.shutdown()


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


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


@dev.command("up")
def dev_up(ctx: typer.Context) -> None:
    """Start every service that has no configured address; wait until all are healthy."""
    stack = LocalStack(_settings(ctx))
    with console.status("starting the local stack..."):
        statuses = asyncio.run(stack.up())
    print_status(statuses, stack.endpoints)


@dev.command("down")
def dev_down(ctx: typer.Context) -> None:
    """Stop exactly what `dev up` started."""
    stopped = LocalStack(_settings(ctx)).down()
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@dev.command("status")
def dev_status(ctx: typer.Context) -> None:
    """Each service: address, who started it, pid, health. Exit 1 if any is unhealthy."""
    stack = LocalStack(_settings(ctx))
    statuses = asyncio.run(stack.status())
    print_status(statuses, stack.endpoints)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@topics.command("init")
def topics_init(ctx: typer.Context) -> None:
    """Create detection-results, risk-assessment-results and the dead-letter topic (idempotent)."""
    settings = _settings(ctx)
    result = asyncio.run(ensure_topics(Endpoints.of(settings).kafka, settings.kafka))
    for topic, state in result.items():
        console.print(f"{topic}: {state}")


@worker.command("run")
def worker_run(ctx: typer.Context) -> None:
    """Run the Temporal worker (workflows and activities) until SIGINT/SIGTERM."""
    from workers.worker import run_worker

    settings = _settings(ctx)
    with traced(settings, "worker"):
        asyncio.run(run_worker(settings))


@bridge.command("run")
def bridge_run(ctx: typer.Context) -> None:
    """Consume detection-results and start one workflow per significant event."""
    from workers.bridge import run_bridge

    settings = _settings(ctx)
    with traced(settings, "bridge"):
        asyncio.run(run_bridge(settings))


@edge.command("run")
def edge_run(
    ctx: typer.Context,
    camera: Annotated[list[str] | None, typer.Option(help="only these camera ids")] = None,
    source: Annotated[str | None, typer.Option(help="a source instead of cameras.yaml")] = None,
    camera_id: Annotated[str, typer.Option(help="camera id for --source")] = "1",
) -> None:
    """Read cameras, detect with YOLO, publish detections to Kafka (until files end or Ctrl-C)."""
    from detection_edge.run import run_edge
    from riskflow.edge_config import CameraConfig

    settings = _settings(ctx)
    cameras = list(settings.cameras)
    if source is not None:
        cameras = [CameraConfig(id=camera_id, source=source)]
    elif camera:
        cameras = [c for c in cameras if c.id in camera]
    with traced(settings, "edge"):
        totals = asyncio.run(run_edge(settings, cameras))
    console.print(f"edge: {dict(totals)}")


@app.command("schema")
def schema(
    output: Annotated[Path, typer.Option(help="Where to write it")] = Path(
        "schemas/detection_event.schema.json"
    ),
) -> None:
    """Write the JSON Schema of the detection message."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(DetectionEvent.model_json_schema(), indent=2) + "\n")
    console.print(f"wrote {output}")


def _run() -> int:
    try:
        app()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except RiskflowError as exc:
        print(f"error: {exc}", file=sys.stderr)  # plain: never wrapped or styled
        return 2
    except (KafkaError, RedisError, OSError) as exc:
        print(f"error: a service is unreachable: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("(is the local stack up? `riskflow dev status`)", file=sys.stderr)
        return 3
    except RuntimeError as exc:
        if "connect" not in str(exc).lower():
            raise
        print(f"error: Temporal is unreachable: {exc}", file=sys.stderr)
        return 3
    return 0


def main() -> None:
    code = _run()
    # Every client and worker is shut down by now. Leave without interpreter teardown: the
    # Temporal SDK's Rust threads can abort a finalizing interpreter (sdk-python#300).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
