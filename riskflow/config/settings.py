"""The root settings model: every section of `config/*.yaml` (one module per section beside
this one), overridden by `RISKFLOW_*` environment variables. Built by `riskflow.config.loader`
once, in the entry point, then passed down. Nothing here reads the environment at import time.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from riskflow.config.bridge import BridgeSettings
from riskflow.config.callbacks import CallbackSettings
from riskflow.config.channels import NotificationSettings
from riskflow.config.console import ConsoleSettings
from riskflow.config.edge import CameraConfig, EdgeSettings
from riskflow.config.incidents import IncidentConfig
from riskflow.config.keys import KeysConfig
from riskflow.config.llm import AggregateSettings, AssessmentPolicy, LLMSettings
from riskflow.config.oncall import OnCallSettings
from riskflow.config.people import PeopleDirectory
from riskflow.config.prices import PriceTable
from riskflow.config.redis import is_cluster_url, parse_cluster_url
from riskflow.config.replay import ReplaySettings
from riskflow.config.services import (
    KafkaSettings,
    LocalStackSettings,
    MetricsSettings,
    SupervisorSettings,
    TemporalSettings,
)
from riskflow.config.significance import CameraRules, SignificanceConfig
from riskflow.config.sites import DEFAULT_SITE_ID, SiteConfig, check_sites, site_of
from riskflow.config.telemetry import TracingSettings
from riskflow.errors import ConfigError

ENV_PREFIX = "RISKFLOW_"
LLM_CALL_MARGIN_SECONDS = 15.0  # an LLM activity beyond its request timeout and slot wait


YAML_DATA: ContextVar[dict[str, Any] | None] = ContextVar("riskflow_yaml_data", default=None)


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (YAML_DATA.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(YAML_DATA.get() or {})


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
    callbacks: CallbackSettings = CallbackSettings()
    people: PeopleDirectory = Field(
        default_factory=PeopleDirectory, description="config/people.yaml"
    )
    # after sites and people: its validator reads both
    oncall: OnCallSettings = Field(default_factory=OnCallSettings, description="rosters")
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
        """The site of a camera (`riskflow.config.sites.site_of`)."""
        return site_of(self.sites, camera_id)

    def incident_config(self, camera_id: str) -> IncidentConfig:
        """The incident behaviour of a camera: its site's, else the default `incidents:`."""
        return self.site(camera_id).incidents or self.incidents

    @field_validator("oncall")
    @classmethod
    def _rosters_name_known_sites_and_people(
        cls, oncall: OnCallSettings, info: ValidationInfo
    ) -> OnCallSettings:
        """A roster's site is configured and everyone it names is in the people directory."""
        sites: list[SiteConfig] | None = info.data.get("sites")
        people: PeopleDirectory | None = info.data.get("people")
        for roster in oncall.rosters:
            if sites is not None and roster.site not in {DEFAULT_SITE_ID, *(s.id for s in sites)}:
                raise ValueError(f"roster {roster.id!r}: site {roster.site!r} is not configured")
            if people is not None:
                unknown = sorted(p for p in roster.people() if people.by_id(p) is None)
                if unknown:
                    raise ValueError(
                        f"roster {roster.id!r} names people not in people.yaml: {unknown}"
                    )
        return oncall

    @field_validator("people")
    @classmethod
    def _people_name_known_sites_and_users(
        cls, people: PeopleDirectory, info: ValidationInfo
    ) -> PeopleDirectory:
        """A person's roles name configured sites (or `default`, or `*`) and their console
        account a configured user: a typo must not silently give nobody a role. (Sites and
        the console are validated before `people`; when they failed, their error is given.)"""
        sites: list[SiteConfig] | None = info.data.get("sites")
        console: ConsoleSettings | None = info.data.get("console")
        if sites is not None:
            unknown = people.unknown_sites([DEFAULT_SITE_ID, *(s.id for s in sites)])
            if unknown:
                raise ValueError(f"roles at sites that are not configured: {unknown}")
        if console is not None:
            users = {u.username for u in console.users}
            strangers = [
                f"{p.id}: {p.console_user}"
                for p in people.root
                if p.console_user is not None and p.console_user not in users
            ]
            if strangers:
                raise ValueError(f"console users that are not configured: {strangers}")
        return people

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

    @model_validator(mode="after")
    def _ladders_name_known_channels(self) -> Settings:
        """Every channel an escalation ladder names (default or a site's, `channels` and
        `fallback_channels`) is configured under `notifications.channels`: a typo stops the
        process at start instead of failing each send later. Not checked while no channel is
        configured at all (settings without a notifications section)."""
        known = set(self.notifications.channels)
        if not known:
            return self
        ladders = [("incidents", self.incidents)]
        ladders += [(f"site {s.id!r}", s.incidents) for s in self.sites if s.incidents]
        for where, config in ladders:
            for level, step in enumerate(config.escalation):
                unknown = sorted({*step.channels, *step.fallback_channels} - known)
                if unknown:
                    raise ValueError(
                        f"{where}: escalation level {level} names channels {unknown} that "
                        f"notifications.channels does not define (defined: {sorted(known)})"
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
