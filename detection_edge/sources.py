"""Frame sources through OpenCV: rtsp:// URLs, video files, webcam indices, image folders.

Live sources (RTSP, webcams) are read by their own thread that keeps only the newest frame,
so a slow detector never builds up latency; a dropped stream is reopened with backoff without
restarting the process. Files and folders are read in full, frame by frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from riskflow.errors import RiskflowError
from riskflow.infra.metrics import EDGE_FRAME_AGE, EDGE_RECONNECTS, EDGE_STALLS
from riskflow.redact import redact_url

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
MAX_READERS = 3  # connections of one live source whose OpenCV call has not returned yet


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
    """A stream read by a background thread; `read()` returns the newest frame only.

    Each connection is read by a thread of its own. A supervisor thread watches the time of
    the last frame: a connection that delivers none for `stall_timeout` seconds (a frozen
    camera, a half-open TCP connection) is counted in `riskflow_edge_stalls_total`, abandoned
    and replaced by a fresh one, without waiting for OpenCV's `read()` to return (it may never
    return); the abandoned reader releases its capture if it ever does. A connection that
    ends is replaced the same way, with backoff (0.5 s doubling to 10 s). Reopened
    connections count in `riskflow_edge_reconnects_total`; the time since the last frame is
    the gauge `riskflow_edge_seconds_since_last_frame`.
    """

    live = True

    def __init__(
        self,
        target: str | int,
        label: str,
        camera: str,
        open_timeout: float = 15.0,
        stall_timeout: float = 10.0,
    ):
        self._target = target
        self._label = label
        self._camera = camera
        self._open_timeout = open_timeout
        self._stall_timeout = stall_timeout
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._stopped = False
        self._index = 0
        self._generation = 0  # the connection whose frames count; older readers stop
        self._alive = 0  # readers whose read() has not returned yet
        self._last_frame = time.monotonic()
        self._delivered = False
        self._opening = False
        first = self._open_first(open_timeout)
        EDGE_FRAME_AGE.labels(camera).set_function(lambda: time.monotonic() - self._last_frame)
        generation = self._start_reader(first)
        self._thread = threading.Thread(
            target=self._supervise, args=(generation,), name=f"source-{camera}", daemon=True
        )
        self._thread.start()

    def _open(self) -> cv2.VideoCapture | None:
        if isinstance(self._target, int):
            cap = cv2.VideoCapture(self._target)
        else:  # OpenCV's FFmpeg back end gives up on a silent server after these (ms);
            # reads later than the stall timeout, so that a stall is seen (and counted) first
            timeouts = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(self._open_timeout * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(self._stall_timeout * 2000),
            ]
            cap = cv2.VideoCapture(self._target, cv2.CAP_ANY, timeouts)
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

    def _start_reader(self, cap: cv2.VideoCapture | None) -> int:
        """Start a connection's reader; returns its generation."""
        with self._cond:
            self._generation += 1
            self._alive += 1
            self._opening = cap is None
            self._delivered = False
            self._last_frame = time.monotonic()
            generation = self._generation
        name = f"source-{self._camera}-{generation}"
        threading.Thread(
            target=self._read_loop, args=(cap, generation), name=name, daemon=True
        ).start()
        return generation

    def _read_loop(self, cap: cv2.VideoCapture | None, generation: int) -> None:
        """One connection: open it (unless given), read until it ends, stalls or is replaced."""
        try:
            if cap is None:
                cap = self._open()
                with self._cond:
                    if cap is None or generation != self._generation:
                        return
                    self._opening = False
                    self._last_frame = time.monotonic()  # the stall clock starts now
                EDGE_RECONNECTS.labels(self._camera).inc()
                logger.info("%s: reconnected", self._label)
            while not self._stopped and generation == self._generation:
                ok, image = cap.read()
                if not ok:
                    break
                with self._cond:
                    if generation != self._generation:
                        break
                    self._latest = Frame(self._index, time.time(), image)  # unread ones drop
                    self._index += 1
                    self._delivered = True
                    self._last_frame = time.monotonic()
                    self._cond.notify_all()
        finally:
            if cap is not None:
                cap.release()
            with self._cond:
                self._alive -= 1
                if generation == self._generation:
                    self._generation += 1  # tell the supervisor this connection ended
                self._cond.notify_all()

    def _supervise(self, generation: int) -> None:
        delay = 0.5
        while not self._stopped:
            verdict = self._watch(generation)
            if verdict == "stalled":
                EDGE_STALLS.labels(self._camera).inc()
                logger.warning(
                    "%s: no frame for %.1fs; reopening", self._label, self._stall_timeout
                )
            elif verdict in ("ended", "unanswered"):
                delay = 0.5 if self._delivered else delay
                what = "stream dropped" if verdict == "ended" else "no answer to reopening"
                logger.warning("%s: %s; reconnecting in %.1fs", self._label, what, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            else:
                continue
            with self._cond:  # readers stuck in OpenCV: wait for one to return first
                while self._alive >= MAX_READERS and not self._stopped:
                    self._cond.wait(1.0)
            if not self._stopped:
                generation = self._start_reader(None)

    def _watch(self, generation: int) -> Literal["stalled", "unanswered", "ended", "running"]:
        """Wait until connection `generation` ends, stalls, or a deadline would be due: the
        stall timeout once open, the open timeout (and a grace second) while opening."""
        with self._cond:
            limit = self._open_timeout + 1.0 if self._opening else self._stall_timeout
            self._cond.wait(max(0.05, limit - (time.monotonic() - self._last_frame)))
            if self._stopped:
                return "running"
            if self._generation != generation:
                return "ended"
            limit = self._open_timeout + 1.0 if self._opening else self._stall_timeout
            if time.monotonic() - self._last_frame < limit:
                return "running"
            self._generation += 1  # abandon the reader: it may be stuck in OpenCV for ever
            return "unanswered" if self._opening else "stalled"

    def read(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._latest is None:
                self._cond.wait(timeout)
            frame, self._latest = self._latest, None
        return frame

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._generation += 1
            self._cond.notify_all()
        self._thread.join(timeout=5)
        with contextlib.suppress(KeyError):
            EDGE_FRAME_AGE.remove(self._camera)


def open_source(
    source: str,
    camera: str,
    rtsp_transport: str = "tcp",
    open_timeout: float = 15.0,
    stall_timeout: float = 10.0,
) -> FrameSource:
    """Open `source`: an rtsp:// or http(s):// URL, a webcam index, a video file, a folder.

    Timeouts in seconds: `open_timeout` for the first connection (then `SourceError`),
    `stall_timeout` without a frame before a live stream is reopened."""
    label = redact_url(source)  # logged, labelled and published: no credentials
    if "://" in source:
        if source.startswith("rtsp") and rtsp_transport:
            # Read by OpenCV's FFmpeg back end when it opens the stream; the socket timeout
            # (microseconds) turns a dead server into a read failure, hence a reconnect; it
            # is twice the stall timeout, so that a silent stream is counted as a stall.
            socket_timeout = int(stall_timeout * 2_000_000)
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = (
                f"rtsp_transport;{rtsp_transport}|timeout;{socket_timeout}"
            )
        return LiveSource(source, label, camera, open_timeout, stall_timeout)
    if source.isdigit():
        return LiveSource(int(source), f"webcam {source}", camera, open_timeout, stall_timeout)
    if Path(source).is_dir():
        return FolderSource(source)
    return FileSource(source)
