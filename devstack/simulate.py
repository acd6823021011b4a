"""Synthetic detection events: a scripted scene per camera (people walking, then one falls)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from riskflow.contracts.events import BBox, Detection, DetectionEvent, ImageSize


def _person(i: int, fallen: bool) -> Detection:
    x = 100.0 + 120 * i
    if fallen:
        box = BBox(x1=x, y1=520, x2=x + 220, y2=600)
        return Detection(class_name="Fall", class_id=1, confidence=0.91, bbox=box, track_id=i + 1)
    box = BBox(x1=x, y1=200, x2=x + 80, y2=560)
    return Detection(class_name="Normal", class_id=0, confidence=0.88, bbox=box, track_id=i + 1)


def scene_event(
    camera_id: str, frame_id: int, captured_at: datetime, people: int, falls: int
) -> DetectionEvent:
    detections = [_person(i, fallen=i < falls) for i in range(people)]
    return DetectionEvent(
        camera_id=camera_id,
        frame_id=frame_id,
        captured_at=captured_at,
        image=ImageSize(width=1280, height=720),
        model_name="fall_detection/best.pt",
        model_version="synthetic",
        detections=detections,
        source="synthetic",
    )


def scripted_events(
    camera_ids: list[str], frames: int, start: datetime | None = None, fps: float = 2.0
) -> Iterator[DetectionEvent]:
    """`frames` frames per camera: one or two people; in the last third somebody falls.

    Without `start` the scene ends now (it is sent faster than it plays: stamps ahead of the
    bridge's clock would be dead-lettered as clock skew)."""
    step = timedelta(seconds=1 / fps)
    start = start or datetime.now(UTC) - step * frames
    for frame in range(frames):
        for n, camera in enumerate(camera_ids):
            falls = 1 if frame >= frames * 2 // 3 else 0
            people = 1 + (frame + n) % 2
            yield scene_event(camera, frame, start + step * frame, people, falls)
