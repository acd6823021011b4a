"""Where each service is: the configured address, or the embedded local stack's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from riskflow.config.settings import Settings


@dataclass(frozen=True)
class Endpoints:
    temporal: str
    kafka: str
    redis: str
    dashscope: str
    temporal_ui: str | None
    # The local notification receiver (dev tooling): channels configured without an address
    # send here. `receiver_ca_file` is the PEM certificate its SMTP server offers on STARTTLS.
    receiver: str = ""
    smtp: str = ""
    receiver_ca_file: Path | None = None

    @classmethod
    def of(cls, settings: Settings) -> Endpoints:
        local = settings.local
        host = local.host
        return cls(
            temporal=settings.temporal_address or f"{host}:{local.temporal_port}",
            kafka=settings.kafka_bootstrap or f"{host}:{local.kafka_port}",
            redis=settings.redis_url or f"redis://{host}:{local.redis_port}/0",
            dashscope=settings.dashscope_base_url or f"http://{host}:{local.dashscope_port}/api/v1",
            temporal_ui=None
            if settings.temporal_address
            else f"http://{host}:{local.temporal_ui_port}",
            receiver=f"http://{host}:{local.receiver_port}",
            smtp=f"{host}:{local.smtp_port}",
            receiver_ca_file=receiver_cert_file(local.state_dir),
        )

    def configured(self, settings: Settings) -> dict[str, bool]:
        """Which services are given by configuration (and so never started locally)."""
        return {
            "temporal": settings.temporal_address is not None,
            "kafka": settings.kafka_bootstrap is not None,
            "redis": settings.redis_url is not None,
            "dashscope": settings.dashscope_base_url is not None,
            # dev tooling, needed only while a channel has no address of its own
            "receiver": not settings.notifications.uses_local_receiver(),
        }


def receiver_cert_file(state_dir: Path) -> Path:
    """Where the local receiver writes the self-signed certificate of its SMTP server."""
    return state_dir.resolve() / "receivers" / "smtp-cert.pem"
