"""Edge frames/s with publishing, against a bare ultralytics predict loop on the same video,
and with the broker stalled (SIGSTOP) to show the network never slows inference.

    python -m bench.edge [--frames 30] [--imgsz 640]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import ultralytics
from prometheus_client import REGISTRY

from bench._stack import bench_settings, report, services
from detection_edge.detector import Detector
from detection_edge.run import run_edge
from devstack.localstack.services import local_services
from riskflow.config.edge import CameraConfig, EdgeSettings
from riskflow.config.services import MetricsSettings
from riskflow.config.settings import Settings
from riskflow.infra.kafka import ensure_topics

CONFIG = Path(__file__).resolve().parent.parent / "config"


def write_video(path: Path, frames: int) -> None:
    assets = Path(ultralytics.__file__).parent / "assets"
    images = [
        cv2.resize(cv2.imread(str(assets / n)), (640, 480)) for n in ("bus.jpg", "zidane.jpg")
    ]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for i in range(frames):
        writer.write(images[i % 2])
    writer.release()


def bare_loop(video: Path, detector: Detector) -> float:
    """The baseline: read and predict, nothing else. Frames/s after the first frame."""
    cap = cv2.VideoCapture(str(video))
    ok, image = cap.read()
    detector.detect(image)  # warm-up, as the edge's first frame
    started, n = time.perf_counter(), 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        detector.detect(image)
        n += 1
    cap.release()
    return n / (time.perf_counter() - started)


def inferred(camera: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "riskflow_edge_frames_total", {"camera": camera, "stage": "inferred"}
        )
        or 0.0
    )


async def until(condition: Callable[[], bool], within: float = 600.0) -> None:
    """Poll a counter-based condition every 5 ms (bounded)."""
    for _ in range(int(within / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("benchmark condition not reached")


async def edge_fps(
    settings: Settings, video: Path, frames: int, camera: str, stall: int | None
) -> dict[str, float]:
    """Frames/s between the first and the last inference; `stall`: SIGSTOP this broker pid."""
    task = asyncio.create_task(
        run_edge(settings, [CameraConfig(id=camera, source=str(video))], asyncio.Event())
    )
    await until(lambda: inferred(camera) >= 1 or task.done())
    started, first = time.perf_counter(), inferred(camera)
    if stall is not None:
        os.kill(stall, signal.SIGSTOP)
    try:
        await until(lambda: inferred(camera) >= frames or task.done())
        fps = (inferred(camera) - first) / (time.perf_counter() - started)
    finally:
        if stall is not None:
            os.kill(stall, signal.SIGCONT)
    totals = await task
    return {"fps": round(fps, 3), "published": totals["published"], "dropped": totals["dropped"]}


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp) / "state", CONFIG).model_copy(
            update={
                "metrics": MetricsSettings(enabled=False),
                "edge": EdgeSettings(imgsz=args.imgsz, max_queue=10),
            }
        )
        video = Path(tmp) / "bench.mp4"
        write_video(video, args.frames)
        detector = Detector("bundled", imgsz=args.imgsz, state_dir=Path(tmp) / "state")
        baseline = bare_loop(video, detector)
        async with services(settings, {"kafka"}) as endpoints:
            await ensure_topics(endpoints.kafka, settings.kafka)
            normal = await edge_fps(settings, video, args.frames, "bench-normal", None)
            (kafka,) = [s for s in local_services(settings) if s.name == "kafka"]
            pid = kafka.process(settings.local.state_dir).pid()
            stalled = await edge_fps(settings, video, args.frames, "bench-stalled", pid)
    report(
        "edge",
        {
            "frames": args.frames,
            "imgsz": args.imgsz,
            "baseline_bare_predict_fps": round(baseline, 3),
            "edge_with_publishing": normal,
            "edge_broker_stalled": stalled,
            "ratio_vs_baseline": round(normal["fps"] / baseline, 4),
            "ratio_stalled_vs_baseline": round(stalled["fps"] / baseline, 4),
            "target": {"ratio_vs_baseline": 0.95},
            "met": normal["fps"] / baseline >= 0.95,
        },
    )
    print(f"{'':26} {'fps':>8} {'ratio':>7} {'published':>9} {'dropped':>8}")
    print(f"{'bare predict loop':26} {baseline:>8.2f} {1.0:>7}")
    for label, row in (("edge, broker up", normal), ("edge, broker stalled", stalled)):
        fps, sent, lost = row["fps"], row["published"], row["dropped"]
        print(f"{label:26} {fps:>8.2f} {fps / baseline:>7.3f} {sent:>9} {lost:>8}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=640)
    asyncio.run(main(parser.parse_args()))
