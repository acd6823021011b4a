"""The golden set: scripted scenes (`devstack.simulate`) with the level the default
rubric expects, an operator label on some, and one thumbnail of the bundled sample frame
(ultralytics' bus.jpg at 64x48) as a snapshot. `python -m tests.golden.make_golden` rewrites
`scenes.jsonl`; `tests/test_replay.py` checks the file is what this writes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devstack.simulate import scene_event
from riskflow.contracts.replay import Label, RecordedEvent
from riskflow.levels import RiskLevel

PATH = Path(__file__).with_name("scenes.jsonl")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

# camera, people, falls, situation, expected level, operator label
SCENES: list[tuple[str, int, int, str, RiskLevel, Label | None]] = [
    ("dock-1", 1, 0, "person", RiskLevel.LOW, None),
    ("dock-1", 2, 0, "person", RiskLevel.LOW, "false_alarm"),
    ("dock-1", 6, 0, "crowd", RiskLevel.MEDIUM, "confirmed"),  # alerted by hand
    ("dock-1", 2, 1, "fall", RiskLevel.HIGH, "confirmed"),
    ("ward-2", 1, 1, "fall", RiskLevel.HIGH, "confirmed"),
    ("ward-2", 3, 2, "fall", RiskLevel.CRITICAL, "confirmed"),
    ("ward-2", 1, 0, "person", RiskLevel.LOW, None),
    ("ward-2", 5, 0, "crowd", RiskLevel.MEDIUM, "false_alarm"),
]


def thumbnail() -> str:
    """The bundled sample frame as a 64x48 JPEG, base64."""
    import cv2
    from ultralytics.utils import ASSETS

    image = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (64, 48))
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def scenes(snapshot_b64: str) -> list[RecordedEvent]:
    out = []
    for n, (camera, people, falls, situation, level, label) in enumerate(SCENES):
        event = scene_event(camera, n, T0 + timedelta(seconds=10 * n), people, falls)
        out.append(
            RecordedEvent(
                event=event,
                situation=situation,
                expected_level=level,
                label=label,
                snapshot_b64=snapshot_b64 if n == 3 else None,
            )
        )
    return out


def lines(snapshot_b64: str) -> str:
    return "".join(
        json.dumps(s.model_dump(mode="json", exclude_none=True), sort_keys=True) + "\n"
        for s in scenes(snapshot_b64)
    )


if __name__ == "__main__":
    PATH.write_text(lines(thumbnail()), encoding="utf-8")
