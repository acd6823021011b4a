"""One settings model: `config/*.yaml` overridden by `RISKFLOW_*` environment variables.

Parsed once, by the entry point (`load_settings`), then passed down. Nothing here reads the
environment at import time.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from riskflow.channels import NotificationSettings
from riskflow.console_config import ConsoleSettings
from riskflow.edge_config import CameraConfig, EdgeSettings
from riskflow.errors import ConfigError
from riskflow.incident_config import IncidentConfig
from riskflow.keyconfig import KeysConfig, Provider
from riskflow.models import AssessmentPolicy, RiskLevel
from riskflow.names import BRIDGE_GROUP, TASK_QUEUE
from riskflow.prices import PriceTable
from riskflow.redis_client import is_cluster_url, parse_cluster_url
from riskflow.replay_config import ReplaySettings
from riskflow.significance_config import CameraRules, SignificanceConfig
from riskflow.sites import SiteConfig, check_sites, site_of
from riskflow.telemetry import TracingSettings

CONFIG_FILES = ("riskflow.yaml", "api_keys.yaml", "cameras.yaml", "sites.yaml", "console.yaml")
ENV_PREFIX = "RISKFLOW_"
LLM_CALL_MARGIN_SECONDS = 15.0  # an LLM activity beyond its request timeout and slot wait


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


class BridgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["incidents", "assessments"] = Field(
        default="incidents",
        description="incidents: one durable incident per camera situation (signal-with-start); "
        "assessments: one assessment workflow per debounce window, no incident",
    )
    clear_signal_seconds: float = Field(
        default=5.0,
        gt=0,
        description="incidents: how often a camera's frames without a match are passed to its "
        "open incident (the auto-resolve check looks at the newest)",
    )
    group_id: str = BRIDGE_GROUP
    max_in_flight: int = Field(default=64, gt=0)
    max_message_bytes: int = Field(default=1_048_576, gt=0)
    fetch_max_records: int = Field(default=200, gt=0)
    # Clocks: capture times come from camera and edge clocks; the bridge judges them by its own.
    max_future_skew_seconds: float = Field(
        default=300.0, gt=0, description="how far past the bridge's clock captured_at may be"
    )
    future_skew_action: Literal["dead_letter", "clamp"] = Field(
        default="dead_letter",
        description="beyond the skew: dead-letter (reason clock_skew) or clamp captured_at "
        "to the bridge's clock",
    )
    max_event_age_seconds: float = Field(
        default=6 * 3600.0, gt=0, description="older events are dropped as stale and counted"
    )
    snapshot_url_hosts: list[str] = Field(
        default_factory=list,
        description="hosts (or .domain) a snapshot URL may name; empty: any http(s) host",
    )
    # Dead letters that cannot be sent as they are go as a bounded JSON envelope.
    dead_letter_prefix_bytes: int = Field(default=1024, ge=0, le=65_536)
    dead_letter_send_attempts: int = Field(
        default=3, gt=0, description="sends of the original bytes before the envelope"
    )


class ProviderModels(BaseModel):
    """The models to ask on one provider's keys (e.g. a vLLM server names its models itself);
    unset: the assessment's own model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text_model: str | None = None
    vision_model: str | None = None


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text_model: str = "qwen-plus"
    vision_model: str = "qwen-vl-plus"
    models: dict[Provider, ProviderModels] = Field(
        default_factory=dict, description="models per provider (keyconfig.Provider)"
    )
    # The tokens a call reserves against tokens-per-minute limits until its answer reports
    # the real count: prompt characters / chars_per_token + image_tokens per image +
    # output_tokens. Qwen counts about 1-1.5 Chinese characters or 3-4 English ones a token;
    # Qwen-VL an image as up to 1280 tokens at its default resolution.
    chars_per_token: float = Field(default=1.5, gt=0)
    image_tokens: int = Field(default=1280, ge=0)
    output_tokens: int = Field(default=500, ge=0)
    request_timeout_seconds: int = Field(default=30, gt=0)
    max_attempts: int = Field(default=6, gt=0, description="LLM calls per assessment")
    max_repairs: int = Field(default=2, ge=0, description="repair prompts after bad JSON")
    max_key_wait_seconds: float = Field(default=3600.0, gt=0)
    history_context: int = Field(default=5, ge=0, description="recent assessments in prompt")


class AggregateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_min_level: RiskLevel = RiskLevel.HIGH
    alerts_max_len: int = Field(default=100, gt=0)
    history_max_len: int = Field(default=20, gt=0)
    # How long an assessment's marker lives, and how long a retried aggregation is still
    # recognised (it never pushes a second alert or history entry within this window).
    assessment_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    # Per-camera keys (latest, alerts, history) expire this long after their last write.
    camera_keys_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)


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
    worker_sdk_port: int = 9474
    bridge_sdk_port: int = 9475
    keypool_refresh_seconds: float = Field(default=5.0, gt=0)
    max_camera_labels: int = Field(
        default=200, ge=0, description="camera label values beyond these are 'other'"
    )


class SupervisorSettings(BaseModel):
    """`riskflow up`: supervised background processes (supervisord, `workers/supervisor.py`).

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


_yaml_data: ContextVar[dict[str, Any] | None] = ContextVar("riskflow_yaml_data", default=None)


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_yaml_data.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get() or {})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    # A configured address is used as it is; an empty one means "the local stack's".
    temporal_address: str | None = None
    kafka_bootstrap: str | None = None
    redis_url: str | None = None
    dashscope_base_url: str | None = None

    temporal: TemporalSettings = TemporalSettings()
    kafka: KafkaSettings = KafkaSettings()
    local: LocalStackSettings = LocalStackSettings()
    bridge: BridgeSettings = BridgeSettings()
    llm: LLMSettings = LLMSettings()
    aggregate: AggregateSettings = AggregateSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    notifications: NotificationSettings = NotificationSettings()
    log_format: Literal["text", "json"] = "text"
    # cameras before significance: the significance validator reads the validated cameras.
    cameras: list[CameraConfig] = Field(default_factory=list)
    significance: SignificanceConfig = SignificanceConfig()
    sites: list[SiteConfig] = Field(default_factory=list)
    incidents: IncidentConfig = IncidentConfig()
    # No alias: with one, pydantic-settings reads the environment without the RISKFLOW_ prefix
    # and RISKFLOW_KEYS__SCHEDULER__... was silently ignored.
    keys: KeysConfig = Field(default_factory=KeysConfig, description="config/api_keys.yaml")
    edge: EdgeSettings = EdgeSettings()
    replay: ReplaySettings = ReplaySettings()
    prices: PriceTable = PriceTable()
    supervisor: SupervisorSettings = SupervisorSettings()
    console: ConsoleSettings = ConsoleSettings()
    config_dir: Path = Path("config")

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        ids = [c.id for c in cameras]
        if len(ids) != len(set(ids)):
            raise ValueError(f"camera ids must be unique: {ids}")
        return cameras

    @field_validator("sites")
    @classmethod
    def _sites(cls, sites: list[SiteConfig]) -> list[SiteConfig]:
        return check_sites(sites)

    def llm_call_seconds(self) -> float:
        """The longest one LLM activity may take, in seconds: the request timeout, the wait
        for a send slot, and a margin."""
        return (
            self.llm.request_timeout_seconds
            + self.keys.scheduler.max_slot_wait_seconds
            + LLM_CALL_MARGIN_SECONDS
        )

    def assessment_policy(self) -> AssessmentPolicy:
        """The bounds an assessment workflow is started with (fixed in its history)."""
        return AssessmentPolicy(
            max_llm_attempts=self.llm.max_attempts,
            max_repairs=self.llm.max_repairs,
            max_key_wait_seconds=self.llm.max_key_wait_seconds,
            lease_ttl_seconds=self.keys.scheduler.lease_ttl_seconds,
            llm_timeout_seconds=self.llm_call_seconds(),
        )

    def worker_shutdown_seconds(self) -> float:
        """How long a stopping worker lets in-flight activities finish, in seconds:
        `temporal.graceful_shutdown_seconds`, never less than one LLM call can take."""
        return max(self.temporal.graceful_shutdown_seconds, self.llm_call_seconds())

    def site(self, camera_id: str) -> SiteConfig:
        """The site of a camera (`riskflow.sites.site_of`)."""
        return site_of(self.sites, camera_id)

    def incident_config(self, camera_id: str) -> IncidentConfig:
        """The incident behaviour of a camera: its site's, else the default `incidents:`."""
        return self.site(camera_id).incidents or self.incidents

    @model_validator(mode="after")
    def _chains_name_known_groups(self) -> Settings:
        known = set(self.keys.quota_groups) | {f"key:{k.key_id}" for k in self.keys.api_keys}
        for site in self.sites:
            capacity = site.capacity
            for step in [*capacity.failover, *(s for c in capacity.cameras.values() for s in c)]:
                unknown = sorted(set(step.quota_groups) - known)
                if unknown:
                    raise ValueError(
                        f"site {site.id!r}: capacity names quota groups {unknown} that "
                        "api_keys.yaml does not define (its quota_groups, or key:<key_id>)"
                    )
        return self

    def capacity_warnings(self) -> list[str]:
        """Budget settings that are valid but probably not meant (logged by workers at start,
        printed by `riskflow keys status`): a cost limit over models without a price (their
        calls cost 0), and `on_exhausted: fallback` without a failover chain (the fallback is a
        text-only call with the text model: spending goes on)."""
        found: list[str] = []
        for site in self.sites:
            capacity, budget = site.capacity, site.capacity.budget
            if budget is None:
                continue
            chains = [capacity.failover, *capacity.cameras.values()]
            if budget.daily_cost or budget.monthly_cost:
                models = {self.llm.text_model, self.llm.vision_model}
                for provider in self.llm.models.values():
                    models |= {provider.text_model or "", provider.vision_model or ""}
                for step in (s for chain in chains for s in chain):
                    models |= {step.text_model or "", step.vision_model or ""}
                unpriced = sorted(m for m in models if m and not self.prices.priced(m))
                if unpriced:
                    found.append(
                        f"site {site.id}: a cost budget, but prices.models has no price for "
                        f"{unpriced}; their calls count 0 against it"
                    )
            if budget.on_exhausted == "fallback" and not any(chains):
                found.append(
                    f"site {site.id}: on_exhausted: fallback without a failover chain goes on "
                    f"calling (text-only, {self.llm.text_model}) once the budget is spent; "
                    "set on_exhausted: stop to cap spending"
                )
        return found

    @field_validator("significance")
    @classmethod
    def _camera_zones(
        cls, significance: SignificanceConfig, info: ValidationInfo
    ) -> SignificanceConfig:
        """Zones given in cameras.yaml apply to the bridge's rules for that camera, unless the
        significance rules name that camera's zones themselves."""
        overrides = dict(significance.cameras)
        for camera in info.data.get("cameras", []):
            if camera.zones is None:
                continue
            current = overrides.get(camera.id, CameraRules())
            if current.zones is None:
                overrides[camera.id] = current.model_copy(update={"zones": camera.zones})
        if overrides == significance.cameras:
            return significance
        return significance.model_copy(update={"cameras": overrides})

    @field_validator("temporal_address", "kafka_bootstrap", "redis_url", "dashscope_base_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _readable_cluster_url(cls, value: str | None) -> str | None:
        """A `redis+cluster://` URL is checked here, at start, not at the first connection."""
        if value and is_cluster_url(value):
            try:
                parse_cluster_url(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(loaded).__name__}")
    return loaded


def _load_files(config_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Merge the config files; remember which file each top-level field came from."""
    data: dict[str, Any] = {}
    origins: dict[str, Path] = {}
    for name in CONFIG_FILES:
        path = config_dir / name
        if not path.exists():
            continue
        content = _read_yaml(path)
        if name == "api_keys.yaml":
            content = {"keys": content} if content else {}
        for field, value in content.items():
            if field in data:
                raise ConfigError(f"{path}: {field!r} is also set in {origins[field]}")
            data[field] = value
            origins[field] = path
    return data, origins


def _describe(exc: ValidationError, origins: dict[str, Path]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        top = loc[0] if loc else ""
        env_name = ENV_PREFIX + "__".join(loc).upper()
        if env_name in os.environ:
            where = f"environment variable {env_name}"
        elif top in origins:
            where = str(origins[top])
        else:
            where = "settings"
        field = ".".join(loc[1:] if top == "keys" and len(loc) > 1 else loc)
        if top == "keys" and origins.get("keys"):
            field = field or "api_keys.yaml"
        lines.append(f"  {where}: {field}: {err['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(config_dir: Path | str | None = None, **overrides: Any) -> Settings:
    """Read `config_dir` (default `$RISKFLOW_CONFIG_DIR` or ./config) and the environment."""
    directory = Path(config_dir or os.environ.get(ENV_PREFIX + "CONFIG_DIR") or "config")
    if config_dir is not None and not directory.is_dir():
        raise ConfigError(f"config directory {directory} does not exist")
    data, origins = _load_files(directory) if directory.is_dir() else ({}, {})
    data["config_dir"] = directory
    token = _yaml_data.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins)) from None
    finally:
        _yaml_data.reset(token)
