"""A port a process serves on that another process holds stops it with a clear, named error
(`riskflow status` shows it as the service's last error), never a traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from riskflow.errors import PortInUseError
from riskflow.infra.metrics import serve
from workers.common.client import sdk_runtime


@pytest.fixture
def taken() -> Iterator[int]:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield int(squatter.getsockname()[1])


def test_a_taken_metrics_port(taken: int) -> None:
    with pytest.raises(PortInUseError, match=rf"metrics: port 127.0.0.1:{taken} is already in use"):
        serve("127.0.0.1", taken)


def test_a_taken_sdk_metrics_port(taken: int) -> None:
    with pytest.raises(PortInUseError, match=rf"sdk metrics: port 127.0.0.1:{taken} .*_sdk_port"):
        sdk_runtime(f"127.0.0.1:{taken}")
