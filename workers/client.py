"""Connect to Temporal: the pydantic data converter and the tracing interceptor, every client."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig


def sdk_runtime(metrics_address: str | None) -> Runtime | None:
    """A runtime that serves the Temporal SDK's own metrics (None: the default runtime)."""
    if metrics_address is None:
        return None
    prometheus = PrometheusConfig(
        bind_address=metrics_address,
        counters_total_suffix=True,  # Prometheus naming, as promtool checks it
        unit_suffix=True,
        durations_as_seconds=True,
    )
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


async def connect(address: str, namespace: str, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
        runtime=runtime,
    )
