"""`config/api_keys.yaml`: keys, quota groups and the pool's scheduling knobs.

The shape is `api_keys: [{key, key_id, qps_limit, rpm_limit, enabled}]` and
`scheduler: {key_cooldown_seconds}`, plus `key_env` (read the secret from an
environment variable), `max_concurrency`, `quota_group` (keys of one account share one
budget, DashScope limits apply per account), and `provider` / `base_url` (which API the key
belongs to; without them a key is DashScope's native API at the configured base URL).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from riskflow.errors import ConfigError, UnknownKeyError

KEY_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

# "dashscope": DashScope's native API (the `dashscope` SDK); "openai": any OpenAI-compatible
# chat-completions endpoint (DashScope compatible-mode, vLLM, Ollama, OpenAI; the `openai` SDK).
Provider = Literal["dashscope", "openai"]
PROVIDERS: tuple[Provider, ...] = ("dashscope", "openai")


class KeyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=KEY_ID_PATTERN)
    key: SecretStr | None = None
    key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    qps_limit: int = Field(gt=0)
    rpm_limit: int = Field(gt=0)
    tpm_limit: int | None = Field(default=None, gt=0, description="tokens per minute")
    max_concurrency: int = Field(default=8, gt=0)
    enabled: bool = True
    quota_group: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]{0,64}$")
    provider: Provider = "dashscope"
    base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="the provider's API root, e.g. https://dashscope.aliyuncs.com/compatible-mode/v1"
        " or http://gpu-host:8000/v1 (vLLM); None: the configured DashScope base URL (native),"
        " or its compatible-mode root (openai)",
    )

    @model_validator(mode="after")
    def _one_secret_source(self) -> KeyConfig:
        if (self.key is None) == (self.key_env is None):
            raise ValueError("give exactly one of 'key' (the secret) or 'key_env' (its variable)")
        return self

    @property
    def group(self) -> str:
        """Keys without a quota group form a group of their own."""
        return self.quota_group or f"key:{self.key_id}"


class QuotaGroupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    qps_limit: int = Field(gt=0)
    rpm_limit: int = Field(gt=0)
    tpm_limit: int | None = Field(default=None, gt=0, description="tokens per minute")


class SchedulerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key_cooldown_seconds: float = Field(default=60.0, gt=0)
    max_cooldown_seconds: float = Field(default=600.0, gt=0)
    error_cooldown_seconds: float = Field(default=5.0, ge=0, description="after 5xx/timeouts")
    lease_ttl_seconds: float = Field(default=120.0, gt=0)
    # The provider counts a request when it arrives; the pool, when the send slot is stamped.
    # Event-loop lag in a busy worker and network jitter sit between the two. Measured with
    # bench.key_pool (3 processes x 8 callers, 2 cores), without pacing: at a load of 1-3, 20 ms
    # let 1 request over the limits in one run of 4 (the first second's burst queues at the
    # provider) and 30 ms none; at a load of 9, 20 ms let 4 over and 50 ms none. With the
    # default pacing below, bursts are gone and 20 ms holds. The guard starts at
    # `window_guard_ms` and adapts: a 429 for the rate
    # (the pool's windows had room, so arrivals were closer than the stamps) doubles it, up to
    # `max_window_guard_ms`, for every worker; it falls back by half every
    # `window_guard_halving_seconds`.
    window_guard_ms: int = Field(
        default=20, ge=0, description="safety margin added to the 1 s and 60 s windows (ms)"
    )
    max_window_guard_ms: int = Field(default=200, ge=0, le=5000)
    window_guard_halving_seconds: float = Field(default=3600.0, gt=0)
    # Even pacing (GCRA, no burst): each send booked one emission interval (1000/qps ms,
    # stretched by this share) after the previous one, so no window fills in a burst that
    # queues at the provider. 2%: 0.98 of a per-second limit; None: off (windows and guard
    # only). bench.key_pool: 0.974 of the limits with 0 violations (bench/README.md).
    pacing_margin: float | None = Field(
        default=0.02, ge=0, le=1, description="share added to each emission interval"
    )
    max_slot_wait_seconds: float = Field(default=5.0, gt=0)
    # Severity first (opt-in): an assessment waiting for a key holds back less severe ones
    # (situation severities, significance_config) on every key, until it is served or stops
    # asking; among waiters of one severity, cameras take turns (start-time fair queueing: a
    # camera's next waiter queues `camera_fairness_seconds` after its previous one), and a
    # camera's own waiters go oldest first. Waiting workflows sleep on timers and are not woken,
    # so a key freed while the first in line sleeps stays unused until it asks again. Below
    # `reserved_min_severity` the last `reserved_share` of each key's capacity (QPS, RPM,
    # concurrency, tokens) is refused.
    severity_first: bool = False
    camera_fairness_seconds: float = Field(default=1.0, ge=0, le=3600)
    reserved_share: float = Field(default=0.0, ge=0, lt=1)
    reserved_min_severity: int = Field(default=5, ge=0)
    waiter_ttl_seconds: float = Field(
        default=90.0, gt=0, description="a waiter that has not asked for this long is dropped"
    )


class KeysConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_keys: list[KeyConfig] = Field(default_factory=list)
    quota_groups: dict[str, QuotaGroupConfig] = Field(default_factory=dict)
    scheduler: SchedulerConfig = SchedulerConfig()

    @model_validator(mode="after")
    def _consistent(self) -> KeysConfig:
        seen: set[str] = set()
        for key in self.api_keys:
            if key.key_id in seen:
                raise ValueError(f"key_id {key.key_id!r} appears twice")
            seen.add(key.key_id)
            if key.quota_group and key.quota_group not in self.quota_groups:
                raise ValueError(
                    f"key {key.key_id!r} names quota_group {key.quota_group!r}, "
                    "which is not defined under quota_groups"
                )
        return self


class KeyRing:
    """Key id -> secret, resolved inside the process that calls the LLM and nowhere else."""

    def __init__(self, secrets: Mapping[str, SecretStr]) -> None:
        self._secrets = dict(secrets)

    @classmethod
    def from_config(cls, config: KeysConfig, environ: Mapping[str, str]) -> KeyRing:
        secrets: dict[str, SecretStr] = {}
        missing = []
        for key in config.api_keys:
            if key.key is not None:
                secrets[key.key_id] = key.key
            elif key.key_env and environ.get(key.key_env):
                secrets[key.key_id] = SecretStr(environ[key.key_env])
            elif key.enabled:
                missing.append(f"{key.key_id} (${key.key_env})")
        if missing:
            raise ConfigError(
                "api_keys.yaml: these enabled keys name an environment variable that is not "
                "set: " + ", ".join(missing)
            )
        return cls(secrets)

    @classmethod
    def from_environment(cls, config: KeysConfig) -> KeyRing:
        return cls.from_config(config, os.environ)

    def secret(self, key_id: str) -> str:
        try:
            return self._secrets[key_id].get_secret_value()
        except KeyError:
            raise UnknownKeyError(key_id) from None

    def key_ids(self) -> list[str]:
        return sorted(self._secrets)

    def __repr__(self) -> str:
        return f"KeyRing(keys={self.key_ids()!r})"
