"""The `riskflow` command: the root app and its groups. Settings are parsed here, once, and
passed down (each group's module reads them with `cli.common.settings_of`)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from cli import (
    bridge,
    callbacks,
    demo,
    dev,
    edge,
    incidents,
    keys,
    oncall,
    pipeline,
    replay,
    services,
    topics,
    worker,
)
from cli import console as console_cli
from cli.common import console
from riskflow.config.loader import load_settings
from riskflow.contracts.events import DetectionEvent
from riskflow.errors import RiskflowError
from riskflow.infra.telemetry import setup_logging

app = typer.Typer(
    help="riskflow: camera detections -> durable, rate-limited LLM risk assessments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dev.app, name="dev", no_args_is_help=True)
app.add_typer(topics.app, name="topics", no_args_is_help=True)
app.add_typer(keys.app, name="keys")
app.add_typer(worker.app, name="worker", no_args_is_help=True)
app.add_typer(bridge.app, name="bridge", no_args_is_help=True)
app.add_typer(edge.app, name="edge", no_args_is_help=True)
app.add_typer(pipeline.app, name="pipeline", no_args_is_help=True)
app.add_typer(replay.app, name="replay", no_args_is_help=True)
app.add_typer(console_cli.app, name="console", no_args_is_help=True)
app.add_typer(incidents.app, name="incidents", no_args_is_help=True)
app.add_typer(callbacks.app, name="callbacks", no_args_is_help=True)
app.add_typer(oncall.app, name="oncall", no_args_is_help=True)
app.command("demo")(demo.demo)
app.command("up")(services.up)
app.command("down")(services.down)
app.command("status")(services.status)
app.command("logs")(services.logs)


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
