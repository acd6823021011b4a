"""Pure decisions: is a detection event significant, and which workflow id does it map to?"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from riskflow.config.significance import SignificanceConfig, SituationRule, Zone
from riskflow.contracts.events import Detection, DetectionEvent


@dataclass(frozen=True)
class Situation:
    rule: str
    severity: int
    count: int
    window_start: int  # epoch seconds of the debounce window the event falls in
    workflow_id: str


def point_in_polygon(x: float, y: float, points: list[tuple[float, float]]) -> bool:
    """Ray casting; points on an edge count as inside for horizontal/vertical edges."""
    inside = False
    n = len(points)
    for i in range(n):
        x1, y1 = points[i]
        x2, y2 = points[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x <= cross:
                inside = not inside
    return inside


def in_zones(detection: Detection, zones: list[Zone]) -> bool:
    if not zones:
        return True
    x, y = detection.bbox.bottom_center()
    return any(point_in_polygon(x, y, zone.points) for zone in zones)


def _matches(rule: SituationRule, detections: list[Detection], floor: float) -> int:
    threshold = rule.min_confidence if rule.min_confidence is not None else floor
    classes = set(rule.classes)
    return sum(1 for d in detections if d.class_name in classes and d.confidence >= threshold)


def workflow_id(camera_id: str, rule: str, window_start: int) -> str:
    return f"risk-{camera_id}-{rule}-{window_start}"


def window_start(camera_id: str, captured_at: float, debounce: float) -> int:
    """The start (epoch s) of the debounce window `captured_at` falls in. Each camera's windows
    are shifted by a stable offset from its id, so many cameras do not all open new windows,
    and start workflows, at the same instant."""
    width = max(1, int(debounce))
    offset = int(hashlib.sha256(camera_id.encode()).hexdigest()[:8], 16) % width
    return int((captured_at - offset) // width * width + offset)


def assess_significance(event: DetectionEvent, config: SignificanceConfig) -> Situation | None:
    """The most severe situation the event shows, or None. Same event -> same answer."""
    camera = config.cameras.get(event.camera_id)
    floor = config.min_confidence
    rules, zones, debounce = config.rules, config.zones, config.debounce_seconds
    if camera is not None:
        floor = camera.min_confidence if camera.min_confidence is not None else floor
        rules = camera.rules if camera.rules is not None else rules
        zones = camera.zones if camera.zones is not None else zones
        debounce = camera.debounce_seconds or debounce
    detections = [d for d in event.detections if in_zones(d, zones)]
    best: tuple[SituationRule, int] | None = None
    for rule in rules:
        count = _matches(rule, detections, floor)
        if count >= rule.min_count and (best is None or rule.severity > best[0].severity):
            best = (rule, count)
    if best is None:
        return None
    rule, count = best
    window = window_start(event.camera_id, event.captured_at.timestamp(), debounce)
    return Situation(
        rule.name, rule.severity, count, window, workflow_id(event.camera_id, rule.name, window)
    )
