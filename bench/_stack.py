"""Benchmarks' own servers: a subset of the local stack on free ports, in a temp state dir."""

from __future__ import annotations

import contextlib
import json
import platform
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from devstack.localstack.process import ManagedProcess, on_free_ports
from devstack.localstack.services import local_services, wait_healthy
from riskflow.config.loader import load_settings
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints


def bench_settings(state_dir: Path, config_dir: Path) -> Settings:
    """Settings of the assessment path (`bridge.mode: assessments`), which these measure."""
    local = on_free_ports(state_dir)
    settings = load_settings(config_dir, local=local)
    bridge = settings.bridge.model_copy(update={"mode": "assessments"})
    return settings.model_copy(update={"bridge": bridge})


@contextlib.asynccontextmanager
async def services(settings: Settings, names: set[str]) -> AsyncIterator[Endpoints]:
    started: list[ManagedProcess] = []
    try:
        for service in local_services(settings):
            if service.name not in names:
                continue
            process = service.process(settings.local.state_dir)
            process.start()
            started.append(process)
            await wait_healthy(service.health, 60)
        yield Endpoints.of(settings)
    finally:
        for process in reversed(started):
            process.stop()


def report(name: str, results: dict[str, Any]) -> None:
    """One JSON line for machines, then a short table for people."""
    record = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        **results,
    }
    print(json.dumps(record, sort_keys=True))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
