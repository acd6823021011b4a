"""Where the services are and how riskflow talks to them: `temporal:`, `kafka:`, `local:` (the
embedded local stack), `metrics:` and `supervisor:` in riskflow.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from riskflow.names import TASK_QUEUE


class TemporalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str = "default"
    task_queue: str = TASK_QUEUE
    # Temporal Cloud / a TLS cluster: an API key (read from this variable), or mTLS files.
    tls: bool = False
    api_key_env: str | None = None
    client_cert_path: Path | None = None
    client_key_path: Path | None = None
    graceful_shutdown_seconds: float = Field(
        default=30.0,
        ge=0,
        description="on SIGTERM a worker stops polling and lets its in-flight activities (an "
        "LLM call) finish this long before cancelling them (Temporal retries them elsewhere)",
    )


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(default=3, gt=0)
    replication_factor: int = Field(default=1, gt=0)
    # Apache Kafka supports idempotent producers; tansu's memory store does not (InitProducerId).
    idempotent_producer: bool = False
    compression: str | None = "gzip"
    session_timeout_ms: int = Field(default=10_000, gt=0)
    heartbeat_interval_ms: int = Field(default=3_000, gt=0)
    # A consumer's next fetch after an empty one that the broker answered sooner than this
    # waits out the rest (a broker that does not hold empty fetches would make it spin;
    # riskflow.infra.kafka.Consumer). 0: never wait.
    empty_fetch_backoff_ms: int = Field(default=20, ge=0, le=1000)
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None


class LocalStackSettings(BaseModel):
    """Ports of the embedded local stack (`riskflow dev up`), all on loopback."""

    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Path(".riskflow")
    host: str = "127.0.0.1"
    temporal_port: int = Field(default=7233, gt=0, lt=65536)
    temporal_ui_port: int = Field(default=8233, gt=0, lt=65536)
    kafka_port: int = Field(default=9092, gt=0, lt=65536)
    redis_port: int = Field(default=6379, gt=0, lt=65536)
    dashscope_port: int = Field(default=8089, gt=0, lt=65536)
    receiver_port: int = Field(
        default=8090, gt=0, lt=65536, description="the notification receiver's HTTP port"
    )
    smtp_port: int = Field(
        default=8025, gt=0, lt=65536, description="the notification receiver's SMTP port"
    )
    kafka_broker: Literal["noida-db", "tansu"] = Field(
        default="noida-db",
        description="noida-db keeps topics on disk under state_dir/kafka and speaks to "
        "aiokafka, kcat and confluent-kafka; tansu keeps them in memory and speaks to aiokafka "
        "only (README: the local Kafka broker)",
    )
    start_timeout_seconds: float = Field(default=60.0, gt=0)


class MetricsSettings(BaseModel):
    """Each process serves /metrics on its port; the Temporal SDK's own on `*_sdk_port`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    worker_port: int = 9464
    bridge_port: int = 9465
    edge_port: int = 9466
    console_port: int = Field(
        default=0, ge=0, lt=65536, description="`console run` serves /metrics here; 0: not"
    )
    callbacks_port: int = 9467
    worker_sdk_port: int = 9474
    bridge_sdk_port: int = 9475
    callbacks_sdk_port: int = 9477
    keypool_refresh_seconds: float = Field(default=5.0, gt=0)
    max_camera_labels: int = Field(
        default=200, ge=0, description="camera label values beyond these are 'other'"
    )


class SupervisorSettings(BaseModel):
    """`riskflow up`: supervised background processes (supervisord,
    `workers/supervisor/supervisor.py`).

    A process that exits within `start_seconds` of its start failed to start; after
    `start_retries` such failures in a row (backing off 1 s, 2 s, ... between them) it is
    given up (state FATAL, shown by `riskflow status`). One that ran longer and then died is
    restarted at once. Stop: SIGTERM, then SIGKILL after the process's `*_stop_seconds` (a
    worker's: its shutdown grace, `Settings.worker_shutdown_seconds()`, + `stop_margin_seconds`)."""

    model_config = ConfigDict(extra="forbid")

    start_seconds: float = Field(default=20.0, gt=0)
    start_retries: int = Field(default=3, ge=0)
    log_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="rotate logs at")
    log_backups: int = Field(default=5, ge=0, description="rotated logs kept per service")
    stop_margin_seconds: float = Field(default=10.0, ge=0)
    bridge_stop_seconds: float = Field(default=15.0, gt=0)
    edge_stop_seconds: float = Field(default=15.0, gt=0, description="the queue drains")
    worker_port_step: int = Field(
        default=100,
        gt=0,
        description="worker-N serves /metrics on metrics.worker_port + (N-1) * step (and the "
        "SDK's on worker_sdk_port + (N-1) * step)",
    )
