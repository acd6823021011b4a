"""Small named errors that carry what the caller needs."""

from __future__ import annotations


class RiskflowError(Exception):
    """Base class of riskflow's own errors."""


class ConfigError(RiskflowError):
    """Configuration that cannot be used; the message names the file and the field."""


class ServiceError(RiskflowError):
    """A service of the local stack could not be started, reached or stopped."""


class PortInUseError(ServiceError):
    """A port a service needs (the local stack's, a process's /metrics) is taken by another
    process. `setting`: the setting that chooses it (default `local.<service>_port`)."""

    def __init__(self, service: str, host: str, port: int, setting: str | None = None) -> None:
        setting = setting or f"local.{service}_port"
        super().__init__(
            f"{service}: port {host}:{port} is already in use by another process; "
            f"free it or choose another port in config/riskflow.yaml ({setting})"
        )
        self.service = service
        self.port = port


class KeyPoolUnavailable(RiskflowError):
    """The key pool's store cannot be reached: no LLM call may be made without a lease."""


class KeyNotInPool(RiskflowError):
    """A key id the key pool does not have (`riskflow keys status` lists them)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key {key_id!r} in the key pool (see `riskflow keys status`)")
        self.key_id = key_id


class UnknownKeyError(RiskflowError):
    """A key id that the key ring has no secret for."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no secret configured for key id {key_id!r}")
        self.key_id = key_id


class StoreVersionError(RiskflowError):
    """The Redis (or Valkey) server is older than riskflow supports; the message says why."""


class IncidentNotFound(RiskflowError):
    """No incident has this id (its view is not in Redis, or has expired)."""

    def __init__(self, incident_id: str) -> None:
        super().__init__(f"no incident {incident_id!r} (see `riskflow incidents list`)")
        self.incident_id = incident_id


class IncidentActionRefused(RiskflowError):
    """An operator action the incident refused: the message says why (e.g. it is resolved)."""
