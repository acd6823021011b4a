from __future__ import annotations

from datetime import UTC, datetime

from riskflow.config.significance import CameraRules, SignificanceConfig, Zone
from riskflow.contracts.events import BBox, Detection, DetectionEvent, ImageSize
from workers.common.significance import assess_significance, point_in_polygon, window_start

T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def det(name: str, conf: float = 0.9, x: float = 100, y2: float = 500) -> Detection:
    return Detection(
        class_name=name, class_id=0, confidence=conf, bbox=BBox(x1=x, y1=100, x2=x + 50, y2=y2)
    )


def event(*detections: Detection, camera: str = "1", at: datetime = T0) -> DetectionEvent:
    return DetectionEvent(
        camera_id=camera,
        frame_id=1,
        captured_at=at,
        image=ImageSize(width=1280, height=720),
        model_name="m",
        detections=list(detections),
    )


def test_nothing_of_interest_is_not_significant() -> None:
    assert assess_significance(event(det("car")), SignificanceConfig()) is None
    assert assess_significance(event(), SignificanceConfig()) is None


def test_most_severe_rule_wins_and_names_the_workflow() -> None:
    situation = assess_significance(event(det("Normal"), det("Fall")), SignificanceConfig())
    assert situation is not None
    assert situation.rule == "fall"
    start = window_start("1", T0.timestamp(), 30)
    assert situation.workflow_id == f"risk-1-fall-{start}"
    assert start <= T0.timestamp() < start + 30


def test_confidence_floor_and_min_count() -> None:
    config = SignificanceConfig()
    assert assess_significance(event(det("Fall", conf=0.3)), config) is None
    crowd = event(*[det("person") for _ in range(5)])
    situation = assess_significance(crowd, config)
    assert situation is not None and situation.rule == "crowd" and situation.count == 5


def test_debounce_window_maps_a_scene_to_one_id_and_severity_is_not_held_back() -> None:
    config = SignificanceConfig(debounce_seconds=30)
    start = window_start("1", T0.timestamp(), 30)
    seconds = [start + s for s in range(30)]
    ids = {
        assess_significance(
            event(det("Normal"), at=datetime.fromtimestamp(t, UTC)), config
        ).workflow_id  # type: ignore[union-attr]
        for t in seconds
    }
    assert len(ids) == 1
    after = assess_significance(
        event(det("Normal"), at=datetime.fromtimestamp(start + 30, UTC)), config
    )
    assert after is not None and after.workflow_id not in ids  # the next window
    fall = assess_significance(
        event(det("Fall"), at=datetime.fromtimestamp(start + 5, UTC)), config
    )
    assert fall is not None and fall.workflow_id not in ids


def test_cameras_open_their_windows_at_different_instants() -> None:
    starts = {window_start(f"cam{i}", T0.timestamp(), 30) % 30 for i in range(50)}
    assert len(starts) > 15  # spread over the 30 s, not all on one boundary


def test_zones_filter_by_where_objects_stand() -> None:
    zone = Zone(name="door", points=[(0, 0), (300, 0), (300, 720), (0, 720)])
    config = SignificanceConfig(cameras={"1": CameraRules(zones=[zone])})
    assert assess_significance(event(det("Fall", x=100)), config) is not None
    assert assess_significance(event(det("Fall", x=800)), config) is None
    # Another camera has no zones.
    assert assess_significance(event(det("Fall", x=800), camera="2"), config) is not None


def test_camera_override_of_confidence() -> None:
    config = SignificanceConfig(cameras={"7": CameraRules(min_confidence=0.95)})
    assert assess_significance(event(det("Fall", conf=0.9), camera="7"), config) is None
    assert assess_significance(event(det("Fall", conf=0.9), camera="8"), config) is not None


def test_point_in_polygon() -> None:
    triangle = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)]
    assert point_in_polygon(1, 1, triangle)
    assert not point_in_polygon(9, 9, triangle)
