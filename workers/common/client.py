"""Connect to Temporal: the pydantic data converter and the tracing interceptor, every client."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import TLSConfig

from riskflow.config.services import TemporalSettings
from riskflow.config.settings import Settings
from riskflow.errors import ConfigError, PortInUseError
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.metrics import serve


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
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=prometheus))
    except ValueError as exc:  # the SDK's Rust core: "Failed starting Prometheus exporter: ..."
        if "in use" not in str(exc):
            raise
        host, _, port = metrics_address.rpartition(":")
        raise PortInUseError("sdk metrics", host, int(port), "metrics.*_sdk_port") from exc


def security(temporal: TemporalSettings, environ: Mapping[str, str]) -> dict[str, Any]:
    """TLS and API key options for Client.connect (Temporal Cloud, TLS clusters)."""
    options: dict[str, Any] = {}
    if temporal.client_cert_path and temporal.client_key_path:
        options["tls"] = TLSConfig(
            client_cert=temporal.client_cert_path.read_bytes(),
            client_private_key=temporal.client_key_path.read_bytes(),
        )
    elif temporal.tls:
        options["tls"] = True
    if temporal.api_key_env:
        key = environ.get(temporal.api_key_env)
        if not key:
            raise ConfigError(
                f"temporal.api_key_env names {temporal.api_key_env}, which is not set"
            )
        options["api_key"] = key
        options.setdefault("tls", True)
    return options


async def connect(
    address: str,
    namespace: str,
    runtime: Runtime | None = None,
    temporal: TemporalSettings | None = None,
) -> Client:
    options = security(temporal, os.environ) if temporal is not None else {}
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
        runtime=runtime,
        **options,
    )


async def connect_process(settings: Settings, metrics_port: int, sdk_metrics_port: int) -> Client:
    """The client of a long-running process: serves its /metrics (riskflow's on one port, the
    Temporal SDK's on another) when metrics are on, and connects with the configured security."""
    metrics = settings.metrics
    runtime = None
    if metrics.enabled:
        serve(metrics.host, metrics_port)
        runtime = sdk_runtime(f"{metrics.host}:{sdk_metrics_port}")
    address = Endpoints.of(settings).temporal
    return await connect(address, settings.temporal.namespace, runtime, settings.temporal)
