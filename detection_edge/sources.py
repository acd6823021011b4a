"""Frame sources through OpenCV: rtsp:// URLs, video files, webcam indices, image folders.

Live sources (RTSP, webcams) are read by their own thread that keeps only the newest frame,
so a slow detector never builds up latency; a dropped stream is reopened with backoff without
restarting the process. Files and folders are read in full, frame by frame.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from riskflow.errors import RiskflowError
from riskflow.metrics import EDGE_RECONNECTS
from riskflow.redact import redact_url

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class SourceError(RiskflowError):
    """A source that cannot be opened (the message says which and why)."""


@dataclass(frozen=True)
class Frame:
    index: int
    captured_at: float  # epoch seconds
    image: np.ndarray[Any, Any]


class FrameSource(Protocol):
    live: bool

    def read(self, timeout: float) -> Frame | None:
        """The next frame; None at the end of a file (or no frame within `timeout` if live)."""
        ...

    def close(self) -> None: ...


def describe(source: str) -> str:
    """The source as it may be logged, labelled and published: no credentials (see
    `riskflow.redact.redact_url`)."""
    return redact_url(source)


class FileSource:
    live = False

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise SourceError(f"video file {path} does not exist")
        self._cap = cv2.VideoCapture(path)
        if not self._cap.isOpened():
            raise SourceError(f"OpenCV cannot open video file {path} (codec or format?)")
        self._index = 0

    def read(self, timeout: float) -> Frame | None:
        ok, image = self._cap.read()
        if not ok:
            return None
        self._index += 1
        return Frame(self._index - 1, time.time(), image)

    def close(self) -> None:
        self._cap.release()


class FolderSource:
    live = False

    def __init__(self, path: str) -> None:
        self._files = sorted(p for p in Path(path).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"image folder {path} holds no .jpg/.png/.bmp files")
        self._index = 0

    def read(self, timeout: float) -> Frame | None:
        while self._index < len(self._files):
            path = self._files[self._index]
            self._index += 1
            image = cv2.imread(str(path))
            if image is not None:
                return Frame(self._index - 1, time.time(), image)
            logger.warning("skipping unreadable image %s", path)
        return None

    def close(self) -> None:
        self._files = []


class LiveSource:
    """A stream read by a background thread; `read()` returns the newest frame only."""

    live = True

    def __init__(self, target: str | int, label: str, camera: str, open_timeout: float = 15.0):
        self._target = target
        self._label = label
        self._camera = camera
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._stopped = False
        self._cap = self._open_first(open_timeout)
        self._thread = threading.Thread(target=self._loop, name=f"source-{camera}", daemon=True)
        self._thread.start()

    def _open(self) -> cv2.VideoCapture | None:
        cap = cv2.VideoCapture(self._target)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _open_first(self, within: float) -> cv2.VideoCapture:
        deadline = time.monotonic() + within
        delay = 0.5
        while True:
            cap = self._open()
            if cap is not None:
                return cap
            if time.monotonic() + delay > deadline:
                raise SourceError(f"cannot open {self._label} (tried for {within:.0f}s)")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _loop(self) -> None:
        index, delay = 0, 0.5
        cap: cv2.VideoCapture | None = self._cap
        while not self._stopped:
            if cap is None:
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                cap = self._open()
                if cap is not None:
                    EDGE_RECONNECTS.labels(self._camera).inc()
                    logger.info("%s: reconnected", self._label)
                    delay = 0.5
                continue
            ok, image = cap.read()
            if not ok:
                logger.warning("%s: stream dropped; reconnecting", self._label)
                cap.release()
                cap = None
                continue
            with self._cond:
                self._latest = Frame(index, time.time(), image)  # older unread frames are dropped
                self._cond.notify_all()
            index += 1
        if cap is not None:
            cap.release()

    def read(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._latest is None:
                self._cond.wait(timeout)
            frame, self._latest = self._latest, None
        return frame

    def close(self) -> None:
        self._stopped = True
        self._thread.join(timeout=5)


def open_source(
    source: str, camera: str, rtsp_transport: str = "tcp", open_timeout: float = 15.0
) -> FrameSource:
    """Open `source`: an rtsp:// or http(s):// URL, a webcam index, a video file, a folder."""
    label = describe(source)
    if "://" in source:
        if source.startswith("rtsp") and rtsp_transport:
            # Read by OpenCV's FFmpeg back end when it opens the stream; the socket timeout
            # (microseconds) turns a dead server into a read failure, hence a reconnect.
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = (
                f"rtsp_transport;{rtsp_transport}|timeout;5000000"
            )
        return LiveSource(source, label, camera, open_timeout)
    if source.isdigit():
        return LiveSource(int(source), f"webcam {source}", camera, open_timeout)
    if Path(source).is_dir():
        return FolderSource(source)
    return FileSource(source)
