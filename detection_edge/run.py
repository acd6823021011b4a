"""`riskflow edge run`: cameras -> detector -> bounded queue -> Kafka.

Each camera has a task that reads frames (in a thread) and hands them to its detector's
single inference thread; publishing only enqueues. The network never blocks inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cv2
from aiokafka import AIOKafkaProducer

from detection_edge.detector import Detector
from detection_edge.publisher import DetectionPublisher
from detection_edge.sources import Frame, open_source
from riskflow.config.edge import CameraConfig, EdgeSettings
from riskflow.config.settings import Settings
from riskflow.contracts.events import Detection, DetectionEvent, ImageSize, SnapshotRef
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_producer, start_client
from riskflow.infra.metrics import EDGE_FRAMES, EDGE_INFERENCE, serve
from riskflow.infra.redis import RedisClient, redis_client
from riskflow.infra.shutdown import stop_on_signals
from riskflow.names import camera_snapshot_key
from riskflow.redact import redact_url

logger = logging.getLogger(__name__)


@dataclass
class Inference:
    """One detector and the one thread it runs on (models are not thread-safe)."""

    detector: Detector
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))

    async def detect(self, image: Any) -> list[Detection]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.detector.detect, image)


class Detectors:
    """Cameras with the same detector options share one model; tracking gets one per camera."""

    def __init__(self, edge: EdgeSettings, settings: Settings) -> None:
        self._edge = edge
        self._settings = settings
        self._cache: dict[tuple[object, ...], Inference] = {}

    def for_camera(self, camera: CameraConfig) -> Inference:
        edge = self._edge
        model = camera.model or edge.model
        imgsz = camera.imgsz or edge.imgsz
        conf = camera.conf if camera.conf is not None else edge.conf
        classes = camera.classes or edge.classes
        key = (model, imgsz, conf, str(classes), camera.id if edge.track else "")
        if key not in self._cache:
            detector = Detector(
                model,
                imgsz=imgsz,
                conf=conf,
                classes=classes,
                device=edge.device,
                track=edge.track,
                models_dir=edge.models_dir,
                state_dir=self._settings.local.state_dir,
            )
            self._cache[key] = Inference(detector)
        return self._cache[key]

    def close(self) -> None:
        for inference in self._cache.values():
            inference.executor.shutdown(wait=False, cancel_futures=True)


class Snapshots:
    """JPEGs of frames with detections, written to Redis in the background with a TTL."""

    def __init__(self, redis: RedisClient, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl
        self._pending: set[asyncio.Task[None]] = set()

    def store(self, camera: str, frame: Frame) -> SnapshotRef | None:
        if len(self._pending) > 50:  # Redis is slow: skip rather than wait
            return None
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            return None
        key = camera_snapshot_key(camera, int(frame.captured_at * 1000), frame.index)
        task = asyncio.create_task(self._write(key, jpeg.tobytes()))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return SnapshotRef(store="redis", ref=key)

    async def _write(self, key: str, data: bytes) -> None:
        try:
            await self._redis.set(key, data, ex=self._ttl)
        except Exception as exc:  # a lost snapshot only costs the vision model its image
            logger.warning("snapshot %s not stored: %s", key, exc)


async def run_camera(
    camera: CameraConfig,
    edge: EdgeSettings,
    inference: Inference,
    publisher: DetectionPublisher,
    stop: asyncio.Event,
    snapshots: Snapshots | None = None,
) -> Counter[str]:
    """Read, infer, enqueue until the file ends (or `stop` for a live source)."""
    counts: Counter[str] = Counter()
    sample_every = camera.sample_every or edge.sample_every
    source = await asyncio.to_thread(
        open_source,
        camera.source,
        camera.id,
        edge.rtsp_transport,
        stall_timeout=edge.stall_timeout_seconds,
    )
    label = redact_url(camera.source)
    try:
        while not stop.is_set():
            frame = await asyncio.to_thread(source.read, edge.read_timeout_seconds)
            if frame is None:
                if source.live:
                    continue
                break
            counts["read"] += 1
            EDGE_FRAMES.labels(camera.id, "read").inc()
            if (counts["read"] - 1) % sample_every:
                continue
            started = time.perf_counter()
            detections = await inference.detect(frame.image)
            EDGE_INFERENCE.labels(camera.id).observe(time.perf_counter() - started)
            EDGE_FRAMES.labels(camera.id, "inferred").inc()
            counts["inferred"] += 1
            snapshot = snapshots.store(camera.id, frame) if snapshots and detections else None
            height, width = frame.image.shape[:2]
            publisher.offer(
                DetectionEvent(
                    camera_id=camera.id,
                    frame_id=frame.index,
                    captured_at=datetime.fromtimestamp(frame.captured_at, UTC),
                    image=ImageSize(width=width, height=height),
                    model_name=inference.detector.model_name,
                    detections=detections,
                    snapshot=snapshot,
                    source=label,
                )
            )
    finally:
        await asyncio.to_thread(source.close)
    logger.info("camera %s done: %s", camera.id, dict(counts))
    return counts


async def run_edge(
    settings: Settings, cameras: list[CameraConfig], stop: asyncio.Event | None = None
) -> Counter[str]:
    """Run every camera until its file ends or `stop`; then drain the queue and close."""
    if not cameras:
        raise ValueError("no cameras: add them to config/cameras.yaml or pass --source")
    stop = stop or stop_on_signals()
    endpoints = Endpoints.of(settings)
    edge = settings.edge
    if settings.metrics.enabled:
        serve(settings.metrics.host, settings.metrics.edge_port)
    detectors = Detectors(edge, settings)
    inferences = {c.id: detectors.for_camera(c) for c in cameras}  # model errors: now, clearly
    producer = make_producer(endpoints.kafka, settings.kafka, linger_ms=20)
    redis = redis_client(endpoints.redis) if edge.snapshots else None

    async def restart() -> AIOKafkaProducer:
        fresh = make_producer(endpoints.kafka, settings.kafka, linger_ms=20)
        try:
            await start_client(fresh)
        except BaseException:
            await fresh.stop()
            raise
        return fresh

    publisher = DetectionPublisher(
        producer,
        edge.max_queue,
        keep_classes=edge.keep_classes,
        max_significant=edge.max_significant_queue,
        restart=restart,
    )
    await start_client(producer)
    sender = asyncio.create_task(publisher.run())
    totals: Counter[str] = Counter()
    try:
        snapshots = Snapshots(redis, edge.snapshot_ttl_seconds) if redis else None
        results = await asyncio.gather(
            *(run_camera(c, edge, inferences[c.id], publisher, stop, snapshots) for c in cameras)
        )
        for counts in results:
            totals.update(counts)
        await publisher.drain()
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await publisher.stop()
        if redis is not None:
            await redis.aclose()
        detectors.close()
    totals["published"], totals["dropped"] = publisher.published, publisher.dropped
    return totals
