"""The detection edge on real frames: the bundled YOLOv8 model on ultralytics' sample images,
a video file written here, and an RTSP stream served by GStreamer, all ending on the broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from devstack.localstack.process import free_port
from devstack.localstack.services import local_services
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_producer
from riskflow.names import DETECTION_TOPIC
from tests.conftest import local_settings, read_topic

cv2 = pytest.importorskip("cv2") if not os.environ.get("CI") else __import__("cv2")
ultralytics = (
    pytest.importorskip("ultralytics") if not os.environ.get("CI") else __import__("ultralytics")
)

from detection_edge.detector import Detector, ModelError  # noqa: E402
from detection_edge.publisher import DetectionPublisher  # noqa: E402
from detection_edge.run import run_edge  # noqa: E402
from detection_edge.sources import SourceError, open_source  # noqa: E402
from devstack.simulate import scene_event  # noqa: E402
from riskflow.config.edge import CameraConfig, EdgeSettings  # noqa: E402
from riskflow.infra.redis import redis_client  # noqa: E402
from tests.mjpeg_server import mjpeg_camera  # noqa: E402

ASSETS = Path(ultralytics.__file__).parent / "assets"


@pytest.fixture(scope="module")
def detector(settings: Settings) -> Detector:
    return Detector("bundled", state_dir=settings.local.state_dir)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPEG frames 640x480 from the two sample images, alternating."""
    folder = tmp_path_factory.mktemp("frames")
    images = [
        cv2.resize(cv2.imread(str(ASSETS / n)), (640, 480)) for n in ("bus.jpg", "zidane.jpg")
    ]
    for i in range(6):
        cv2.imwrite(str(folder / f"frame{i:03d}.jpg"), images[i % 2])
    return folder


@pytest.fixture(scope="module")
def video(frames: Path) -> Path:
    path = frames.parent / "scene.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (640, 480))
    for name in sorted(frames.iterdir()) * 2:
        writer.write(cv2.imread(str(name)))
    writer.release()
    return path


def test_bundled_model_finds_the_people_on_the_bus(detector: Detector) -> None:
    detections = detector.detect(cv2.imread(str(ASSETS / "bus.jpg")))
    people = [d for d in detections if d.class_name == "Normal"]
    assert len(people) >= 3
    assert all(0.25 <= d.confidence <= 1 for d in people)
    assert all(d.bbox.x2 > d.bbox.x1 and d.bbox.y2 > d.bbox.y1 for d in people)


async def test_video_file_is_processed_fully_onto_the_broker(
    settings: Settings, stack: Endpoints, video: Path, unique: str
) -> None:
    camera = CameraConfig(id=f"file-{unique}", source=str(video))
    totals = await run_edge(settings, [camera], asyncio.Event())
    assert totals["read"] == totals["inferred"] == totals["published"] == 12
    assert totals["dropped"] == 0
    messages = await read_topic(
        stack.kafka, DETECTION_TOPIC, lambda d: d.get("camera_id") == camera.id, 12
    )
    assert sorted(m["frame_id"] for m in messages) == list(range(12))
    assert all(
        m["model_name"] == "best.pt" and m["image"] == {"width": 640, "height": 480}
        for m in messages
    )
    assert sum(1 for m in messages for d in m["detections"] if d["class_name"] == "Normal") >= 12
    assert all(m["_headers"].get("traceparent") for m in messages)


def rtsp_available() -> None:
    probe = subprocess.run(
        ["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
        capture_output=True,
    )
    if probe.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("GStreamer RTSP server missing (.ci/run installs its Debian packages)")
        pytest.skip("GStreamer RTSP server not installed")


def serve_rtsp(frames: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            "/usr/bin/python3",
            str(Path(__file__).parent / "rtsp_server.py"),
            "--port",
            str(port),
            "--frames",
            str(frames),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdout is not None and b"serving" in server.stdout.readline()
    return server


async def test_snapshots_of_frames_with_detections_land_in_redis(
    settings: Settings, stack: Endpoints, video: Path, unique: str
) -> None:
    snapshots = settings.model_copy(
        update={"edge": EdgeSettings(snapshots=True, snapshot_ttl_seconds=60)}
    )
    camera = CameraConfig(id=f"snap-{unique}", source=str(video), sample_every=6)
    totals = await run_edge(snapshots, [camera], asyncio.Event())
    assert totals["published"] == 2
    messages = await read_topic(
        stack.kafka, DETECTION_TOPIC, lambda d: d.get("camera_id") == camera.id, 2
    )
    redis = redis_client(stack.redis)
    try:
        for message in messages:
            assert message["detections"] and message["snapshot"]["store"] == "redis"
            jpeg = await redis.get(message["snapshot"]["ref"])
            assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
            assert 0 < await redis.ttl(message["snapshot"]["ref"]) <= 60
    finally:
        await redis.aclose()


@pytest.fixture
def rtsp_server(frames: Path) -> Iterator[str]:
    rtsp_available()
    port = free_port()
    server = serve_rtsp(frames, port)
    try:
        yield f"rtsp://127.0.0.1:{port}/cam"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


async def test_rtsp_stream_reaches_the_broker(
    settings: Settings, stack: Endpoints, rtsp_server: str, unique: str
) -> None:
    camera = CameraConfig(id=f"rtsp-{unique}", source=rtsp_server)
    stop = asyncio.Event()
    edge = asyncio.create_task(run_edge(settings, [camera], stop))
    messages = await read_topic(
        stack.kafka, DETECTION_TOPIC, lambda d: d.get("camera_id") == camera.id, 3, within=60
    )
    stop.set()
    totals = await asyncio.wait_for(edge, 30)
    # A live stream publishes for as long as it runs: at least the 3 read, every one whole.
    assert len(messages) >= 3 and totals["published"] >= len(messages)
    frame_ids = [m["frame_id"] for m in messages]
    assert len(set(frame_ids)) == len(frame_ids)  # each frame published once
    assert all(m["source"] == rtsp_server for m in messages)  # no credentials here to hide
    assert all(m["image"] == {"width": 640, "height": 480} for m in messages)
    assert any(d["class_name"] == "Normal" for m in messages for d in m["detections"])


def test_clear_errors_for_bad_models_and_sources(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not found.*never downloaded"):
        Detector("missing.pt", state_dir=settings.local.state_dir)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot load model"):
        Detector(str(broken), state_dir=settings.local.state_dir)
    with pytest.raises(ModelError, match="not in"):
        Detector("bundled", classes=["giraffe"], state_dir=settings.local.state_dir)
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nope.mp4"), "c")
    with pytest.raises(SourceError, match=r"no \.jpg"):
        open_source(str(tmp_path), "c")
    with pytest.raises(SourceError, match=r"cannot open rtsp://127\.0\.0\.1"):
        open_source(f"rtsp://user:secret@127.0.0.1:{free_port()}/x", "c", open_timeout=1)


async def test_a_stalled_broker_never_blocks_publishing(tmp_path: Path) -> None:
    """SIGSTOP a real broker: offer() stays non-blocking, drops the oldest, then recovers."""
    own = local_settings(tmp_path / "state")
    (kafka,) = [s for s in local_services(own) if s.name == "kafka"]
    broker = kafka.process(own.local.state_dir)
    pid = broker.start()
    producer = make_producer(
        kafka.address, own.kafka, request_timeout_ms=60_000, max_batch_size=1024
    )
    try:
        for _ in range(100):
            try:
                await producer.start()
                break
            except Exception:
                await asyncio.sleep(0.1)
        publisher = DetectionPublisher(producer, max_queue=50)
        sender = asyncio.create_task(publisher.run())
        os.kill(pid, signal.SIGSTOP)
        for frame in range(2000):
            publisher.offer(scene_event("stall", frame, datetime.now(UTC), 1, 0))
            if frame % 100 == 0:
                await asyncio.sleep(0)  # let the sender run; it must not hold up offer()
        assert publisher.dropped > 0 and publisher.pending() <= 50
        os.kill(pid, signal.SIGCONT)
        for _ in range(300):
            if publisher.published > 0:
                break
            await asyncio.sleep(0.1)
        assert publisher.published > 0
        sender.cancel()
    finally:
        os.kill(pid, signal.SIGCONT)
        await producer.stop()
        broker.stop()


async def test_a_dropped_stream_is_reopened_without_a_restart(
    settings: Settings, stack: Endpoints, frames: Path, unique: str
) -> None:
    rtsp_available()
    port = free_port()
    server = serve_rtsp(frames, port)
    camera = CameraConfig(id=f"drop-{unique}", source=f"rtsp://127.0.0.1:{port}/cam")
    stop = asyncio.Event()
    edge = asyncio.create_task(run_edge(settings, [camera], stop))
    mine = lambda d: d.get("camera_id") == camera.id  # noqa: E731
    try:
        await read_topic(stack.kafka, DETECTION_TOPIC, mine, 2, within=60)
        server.send_signal(signal.SIGKILL)  # the camera goes away...
        server.wait(10)
        await asyncio.sleep(2)
        back = datetime.now(UTC)
        server = serve_rtsp(frames, port)  # ...and comes back

        def since_back(d: dict[str, Any]) -> bool:
            return mine(d) and datetime.fromisoformat(d["captured_at"]) > back

        # Frames captured after the camera came back reach the broker (not a count of all
        # messages within some seconds, which depends on how fast this machine is).
        after = await read_topic(stack.kafka, DETECTION_TOPIC, since_back, 2, within=60)
    finally:
        stop.set()
        await asyncio.wait_for(edge, 30)
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    assert REGISTRY.get_sample_value("riskflow_edge_reconnects_total", {"camera": camera.id}) == 1
    assert len(after) >= 2  # frames flow again, in the same process


async def test_a_frozen_camera_is_reopened_and_publishes_again(
    settings: Settings, stack: Endpoints, unique: str
) -> None:
    """Through `run_edge`: a camera that freezes without closing its connection is seen
    within the configured stall timeout, counted, reopened, and its frames reach the broker
    again; its label carries no credentials."""
    stalling = settings.model_copy(
        update={"edge": EdgeSettings(stall_timeout_seconds=1.0, sample_every=5)}
    )
    mine = lambda d: d.get("camera_id") == camera.id  # noqa: E731
    with mjpeg_camera(["freeze", "serve"]) as (url, server):
        secret_url = url.replace("http://", "http://admin:p@ss@") + "?token=zz&channel=1"
        camera = CameraConfig(id=f"frozen-{unique}", source=secret_url)
        stop = asyncio.Event()
        edge = asyncio.create_task(run_edge(stalling, [camera], stop))
        try:
            for _ in range(600):
                if server.connections >= 2 and REGISTRY.get_sample_value(
                    "riskflow_edge_reconnects_total", {"camera": camera.id}
                ):
                    break
                await asyncio.sleep(0.1)
            back = datetime.now(UTC)

            def since_back(d: dict[str, Any]) -> bool:
                return mine(d) and datetime.fromisoformat(d["captured_at"]) > back

            after = await read_topic(stack.kafka, DETECTION_TOPIC, since_back, 1, within=60)
        finally:
            stop.set()
            await asyncio.wait_for(edge, 30)
    assert REGISTRY.get_sample_value("riskflow_edge_stalls_total", {"camera": camera.id})
    assert after
    assert after[0]["source"] == url + "?channel=1"
