"""`riskflow pipeline test --mode e2e|producer|consumer` (the original guide's test script)."""

from __future__ import annotations

import asyncio
import json
import time
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from riskflow.endpoints import Endpoints
from riskflow.kafka import make_consumer, make_producer
from riskflow.names import DETECTION_TOPIC, RESULTS_TOPIC
from riskflow.settings import Settings
from riskflow.simulate import scripted_events
from workers.significance import assess_significance

app = typer.Typer(help="Exercise the running pipeline.")
console = Console()


class Mode(StrEnum):
    e2e = "e2e"
    producer = "producer"
    consumer = "consumer"


async def produce(settings: Settings, cameras: list[str], frames: int) -> set[str]:
    """Send scripted events; return the workflow ids the bridge should start for them."""
    producer = make_producer(Endpoints.of(settings).kafka, settings.kafka)
    expected: set[str] = set()
    await producer.start()
    try:
        for event in scripted_events(cameras, frames):
            situation = assess_significance(event, settings.significance)
            if situation is not None:
                expected.add(situation.workflow_id)
            await producer.send_and_wait(
                DETECTION_TOPIC, event.model_dump_json().encode(), key=event.camera_id.encode()
            )
    finally:
        await producer.stop()
    return expected


async def consume(
    settings: Settings, topic: str, duration: float, wanted: set[str] | None = None
) -> dict[str, dict[str, object]]:
    """Read `topic` for `duration` s (or until every wanted assessment id is seen)."""
    consumer = make_consumer(Endpoints.of(settings).kafka, settings.kafka, topic, group_id=None)
    seen: dict[str, dict[str, object]] = {}
    await consumer.start()
    try:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    data = _decode(record.value)
                    key = str(data.get("assessment_id") or f"{record.partition}/{record.offset}")
                    seen[key] = data
                    console.print(f"[{record.topic}] {_summary(data)}")
            if wanted is not None and wanted <= seen.keys():
                break
    finally:
        await consumer.stop()
    return seen


def _decode(value: bytes | None) -> dict[str, object]:
    try:
        data = json.loads(value or b"{}")
    except json.JSONDecodeError:
        return {"raw": (value or b"")[:200].decode(errors="replace")}
    return data if isinstance(data, dict) else {"value": data}


def _summary(data: dict[str, object]) -> str:
    if "risk_level" in data or "status" in data:
        return (
            f"{data.get('assessment_id')}: {data.get('status')} {data.get('risk_level')} "
            f"({data.get('risk_score')}) {data.get('summary') or data.get('failure_reason')}"
        )
    return json.dumps(data)[:200]


@app.command("test")
def test(
    ctx: typer.Context,
    mode: Annotated[Mode, typer.Option(help="e2e, producer or consumer")] = Mode.e2e,
    duration: Annotated[float, typer.Option(help="seconds to wait for results")] = 60.0,
    num_messages: Annotated[int, typer.Option(help="frames per camera")] = 10,
    topic: Annotated[str, typer.Option(help="topic for --mode consumer")] = RESULTS_TOPIC,
    cameras: Annotated[int, typer.Option(help="simulated cameras")] = 1,
) -> None:
    """Send scripted detections and/or watch results (needs the worker and bridge for e2e)."""
    settings: Settings = ctx.obj
    camera_ids = [str(i + 1) for i in range(cameras)]
    if mode == Mode.consumer:
        seen = asyncio.run(consume(settings, topic, duration))
        console.print(f"{len(seen)} message(s) on {topic}")
        return
    expected = asyncio.run(produce(settings, camera_ids, num_messages))
    console.print(
        f"produced {num_messages * cameras} detection message(s); "
        f"{len(expected)} significant situation(s)"
    )
    if mode == Mode.producer:
        return
    seen = asyncio.run(consume(settings, RESULTS_TOPIC, duration, wanted=expected))
    missing = expected - seen.keys()
    console.print(f"results: {len(expected) - len(missing)}/{len(expected)} assessments arrived")
    if missing:
        console.print(f"[red]missing: {sorted(missing)}[/red]")
        raise typer.Exit(1)
