"""Tracing and logging set-up, called by entry points only.

One trace per event: the edge's publish span travels in Kafka headers (W3C trace context),
the bridge continues it around the workflow start, and Temporal's tracing interceptor carries
it into the workflow and each activity.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class TracingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
