"""Tracing and logging set-up, called by entry points only.

One trace per event: the edge's publish span travels in Kafka headers (W3C trace context),
the bridge continues it around the workflow start, and Temporal's tracing interceptor carries
it into the workflow and each activity.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Literal

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from riskflow.config.telemetry import TracingSettings

TRACER_NAME = "riskflow"


def setup_tracing(settings: TracingSettings, service: str) -> TracerProvider | None:
    """Install a tracer provider for this process (None when tracing is off)."""
    if settings.exporter == "none":
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"riskflow-{service}"}))
    exporter: SpanExporter
    if settings.exporter == "console":
        exporter = ConsoleSpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    trace.set_tracer_provider(provider)
    return provider


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def inject_headers() -> list[tuple[str, bytes]]:
    """The current trace context as Kafka headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def extract_headers(headers: Iterable[tuple[str, bytes]] | None) -> context.Context:
    carrier = {k: v.decode(errors="replace") for k, v in headers or ()}
    return propagate.extract(carrier)


class JsonFormatter(logging.Formatter):
    """One JSON object per line with riskflow's and Temporal's context fields."""

    FIELDS = ("camera_id", "event_id", "workflow_id", "assessment_id", "key_id")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for key in ("temporal_workflow", "temporal_activity"):
            extra = getattr(record, key, None)
            if isinstance(extra, Mapping):
                entry["workflow_id"] = extra.get("workflow_id", entry.get("workflow_id"))
                entry[key] = {
                    k: v
                    for k, v in extra.items()
                    if k in ("workflow_id", "activity_type", "attempt", "workflow_type")
                }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str, fmt: Literal["text", "json"]) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
