"""The demo's camera: a video made from ultralytics' bundled sample image, with a scripted fall.

People stand on the street (bus.jpg); in the last third the scene is turned on its side, which
the bundled fall model reads as people down. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

WIDTH, HEIGHT = 960, 720


def _letterbox(image: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    h, w = image.shape[:2]
    scale = min(WIDTH / w, HEIGHT / h)
    resized = cv2.resize(image, (int(w * scale), int(h * scale)))
    canvas = np.full((HEIGHT, WIDTH, 3), 114, np.uint8)
    y, x = (HEIGHT - resized.shape[0]) // 2, (WIDTH - resized.shape[1]) // 2
    canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return canvas


def sample_image() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"


def write_scene(path: Path, frames: int = 24, fps: int = 4) -> Path:
    """Write the scene (mp4v) unless it is already there; returns `path`."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    image = cv2.imread(str(sample_image()))
    if image is None:
        raise FileNotFoundError(f"cannot read the sample image {sample_image()}")
    standing = _letterbox(image)
    fallen = _letterbox(cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE))
    partial = path.with_suffix(".partial.mp4")
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    for frame in range(frames):
        writer.write(fallen if frame >= frames * 2 // 3 else standing)
    writer.release()
    partial.rename(path)
    return path
