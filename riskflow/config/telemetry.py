"""`tracing:` in riskflow.yaml: where spans go (`riskflow.infra.telemetry` sets them up in the
entry points).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class TracingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
