"""Live sources that stop delivering frames without closing the connection: a camera that
freezes mid-stream, and a reconnect that the server accepts and never answers. Both are seen
within the stall timeout without waiting on OpenCV's read(), counted, and reopened."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

cv2 = pytest.importorskip("cv2") if not os.environ.get("CI") else __import__("cv2")

from detection_edge.sources import Frame, FrameSource, open_source  # noqa: E402
from devstack.localstack.process import free_port  # noqa: E402
from tests.mjpeg_server import mjpeg_camera, shade  # noqa: E402


def connection_of(frame: Frame) -> int:
    """Which server connection sent `frame` (each sends one flat grey, see `shade`)."""
    mean = float(frame.image.mean())
    return min(range(1, 7), key=lambda n: abs(shade(n) - mean))


def read_until_connection(source: FrameSource, wanted: int, reads: int = 600) -> set[int]:
    """Connections seen until a frame of connection `wanted` or a later one arrives (or
    `reads` reads of 0.1 s)."""
    seen: set[int] = set()
    for _ in range(reads):
        frame = source.read(0.1)
        if frame is not None:
            seen.add(connection_of(frame))
            if max(seen) >= wanted:
                break
    return seen


def sample(name: str, camera: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"camera": camera})


def test_a_frozen_camera_and_a_hung_reconnect_are_reopened() -> None:
    camera = f"frozen-{uuid.uuid4().hex[:8]}"
    with mjpeg_camera(["freeze", "silent", "serve"]) as (url, server):
        source = open_source(url, camera, open_timeout=3, stall_timeout=1.0)
        try:
            assert 1 in read_until_connection(source, 1)
            assert sample("riskflow_edge_seconds_since_last_frame", camera) is not None
            seen = read_until_connection(source, 3)
        finally:
            source.close()
        assert max(seen) >= 3 and 2 not in seen and server.connections >= 3
    # The frozen stream stalled; the connection that never answered was given up (unopened).
    assert (sample("riskflow_edge_stalls_total", camera) or 0) >= 1
    assert (sample("riskflow_edge_reconnects_total", camera) or 0) >= 1
    assert sample("riskflow_edge_seconds_since_last_frame", camera) is None  # closed


def test_a_camera_that_closes_its_stream_is_reopened_without_a_stall() -> None:
    camera = f"closing-{uuid.uuid4().hex[:8]}"
    with mjpeg_camera(["serve"]) as (url, server):
        source = open_source(url, camera, open_timeout=10, stall_timeout=30.0)
        try:
            assert 1 in read_until_connection(source, 1)
            server.drop_connections()
            seen = read_until_connection(source, 2)
        finally:
            source.close()
    assert max(seen) >= 2
    assert sample("riskflow_edge_reconnects_total", camera) == 1
    assert sample("riskflow_edge_stalls_total", camera) is None


def test_a_paused_rtsp_server_is_a_stall_and_is_reopened(tmp_path: Path) -> None:
    """A GStreamer RTSP camera stopped with SIGSTOP: its TCP connection stays open and
    silent (what a hung camera or a half-open connection looks like to the reader)."""
    from tests.test_edge import rtsp_available, serve_rtsp

    rtsp_available()
    for i in range(4):
        image = np.full((120, 160, 3), 60 * i, dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"frame{i:03d}.jpg"), image)
    port = free_port()
    server = serve_rtsp(tmp_path, port)
    camera = f"paused-{uuid.uuid4().hex[:8]}"
    try:
        source = open_source(
            f"rtsp://127.0.0.1:{port}/cam", camera, open_timeout=5, stall_timeout=1.0
        )
        try:
            assert any(source.read(0.1) is not None for _ in range(300))
            server.send_signal(signal.SIGSTOP)
            # The server does not pace itself to its frame rate: frames it sent before the
            # stop may still be buffered, and are read first (each read returns at once).
            for _ in range(10_000):
                if sample("riskflow_edge_stalls_total", camera):
                    break
                source.read(0.1)
            server.send_signal(signal.SIGCONT)
            for _ in range(600):
                frame = source.read(0.1)
                if frame is not None and sample("riskflow_edge_reconnects_total", camera):
                    break
        finally:
            source.close()
    finally:
        server.send_signal(signal.SIGCONT)
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    assert (sample("riskflow_edge_stalls_total", camera) or 0) >= 1
    assert (sample("riskflow_edge_reconnects_total", camera) or 0) >= 1
    assert frame is not None  # frames flow again on the reopened connection
