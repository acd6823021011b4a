"""`riskflow dev up/down/status`: the whole local stack, started and stopped by pid."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from devstack.localstack.process import ManagedProcess
from devstack.localstack.services import (
    Service,
    check_kafka,
    check_redis,
    check_temporal,
    local_services,
    wait_healthy,
)
from riskflow.config.settings import Settings
from riskflow.errors import ServiceError
from riskflow.infra.endpoints import Endpoints

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    managed: bool  # started by this stack (False: configured elsewhere)
    pid: int | None
    healthy: bool
    detail: str = ""


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoints = Endpoints.of(settings)
        configured = self.endpoints.configured(settings)
        self.services = [s for s in local_services(settings) if not configured[s.name]]
        self.state_dir = settings.local.state_dir

    def _process(self, service: Service) -> ManagedProcess:
        return service.process(self.state_dir)

    def running(self) -> set[str]:
        """The services this stack started that still run."""
        return {s.name for s in self.services if self._process(s).pid() is not None}

    def stop_only(self, names: set[str]) -> list[str]:
        """Stop these of the services this stack started, newest first."""
        stopped = []
        for service in reversed(self.services):
            if service.name in names and self._process(service).stop():
                stopped.append(service.name)
        return stopped

    async def up(self) -> list[ServiceStatus]:
        """Start what is not running yet and wait until every service is healthy."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for service in self.services:
            process = self._process(service)
            pid = process.start()
            logger.info(
                "%s: pid %s, waiting until healthy at %s", service.name, pid, service.address
            )
            try:
                await self._wait(service, process)
            except ServiceError:
                process.stop()
                raise
        return await self.status()

    async def _wait(self, service: Service, process: ManagedProcess) -> None:
        timeout = self.settings.local.start_timeout_seconds

        async def check() -> None:
            log_tail = process.exited_early()
            if log_tail is not None:
                raise _Exited(f"{service.name} exited during start; log:\n{log_tail}")
            await service.health()

        try:
            await wait_healthy(check, timeout)
        except ServiceError as exc:
            cause = exc.__cause__
            if isinstance(cause, _Exited):
                raise ServiceError(str(cause)) from None
            raise ServiceError(f"{service.name}: {exc} (log: {process.log_file})") from None

    def down(self) -> list[str]:
        """Stop exactly what `up` started, newest first. Returns the names stopped."""
        return self.stop_only({s.name for s in self.services})

    async def status(self) -> list[ServiceStatus]:
        results = [self._managed_status(s) for s in self.services]
        managed = {s.name for s in self.services}
        results += [self._configured_status(name) for name in _ALL if name not in managed]
        statuses = await asyncio.gather(*results)
        order = {name: i for i, name in enumerate(_ALL)}
        return sorted(statuses, key=lambda s: order[s.name])

    async def _managed_status(self, service: Service) -> ServiceStatus:
        pid = self._process(service).pid()
        if pid is None:
            return ServiceStatus(service.name, service.address, True, None, False, "not running")
        healthy, detail = await _probe(service.health)
        return ServiceStatus(service.name, service.address, True, pid, healthy, detail)

    async def _configured_status(self, name: str) -> ServiceStatus:
        address = getattr(self.endpoints, name)
        checks = {
            "temporal": lambda: check_temporal(address),
            "kafka": lambda: check_kafka(address),
            "redis": lambda: check_redis(address),
        }
        if name == "receiver":
            detail = "not started: every notification channel has its own address"
            return ServiceStatus(name, address, False, None, True, detail)
        if name not in checks:
            return ServiceStatus(name, address, False, None, True, "configured, not probed")
        healthy, detail = await _probe(checks[name])
        return ServiceStatus(name, address, False, None, healthy, detail or "configured")


_ALL = ("temporal", "kafka", "redis", "dashscope", "receiver")


class _Exited(Exception):
    pass


async def _probe(check: object) -> tuple[bool, str]:
    assert callable(check)
    try:
        await asyncio.wait_for(check(), timeout=5)
    except Exception as exc:
        return False, f"unhealthy: {type(exc).__name__}: {exc}"[:200]
    return True, ""
