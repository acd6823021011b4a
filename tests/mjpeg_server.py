"""An HTTP MJPEG camera for tests (multipart/x-mixed-replace, what many IP cameras serve),
whose connections misbehave on request: each connection takes the next behaviour of a list.

- `serve`: frames for as long as the client reads;
- `freeze`: a few frames, then nothing, with the connection left open (a frozen camera);
- `silent`: accepts the connection and never answers (a half-open connection, a hung server).

Every frame of connection n (1, 2, ...) is one flat grey of value `shade(n)`, so a reader can
tell which connection a frame came from.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np

BOUNDARY = b"frame"


def shade(connection: int) -> int:
    return min(255, 40 * connection)


def _jpeg(connection: int) -> bytes:
    image = np.full((120, 160, 3), shade(connection), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        number, behaviour = self.server.next_connection()
        sock: socket.socket = self.request
        self.server.open_sockets.append(sock)
        if behaviour == "silent":
            self.server.closed.wait()
            return
        sock.recv(65536)  # the request; its content does not matter
        sock.sendall(
            b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"
        )
        jpeg = _jpeg(number)
        part = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
        frames = 0
        try:
            while not self.server.closed.is_set():
                if behaviour == "freeze" and frames >= 10:
                    self.server.closed.wait()  # keep the connection open, send nothing
                    return
                sock.sendall(part % (BOUNDARY, len(jpeg), jpeg))
                frames += 1
                time.sleep(0.05)
        except OSError:
            return  # the client went away


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviours: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self._behaviours = behaviours
        self._lock = threading.Lock()
        self.connections = 0
        self.closed = threading.Event()
        self.open_sockets: list[socket.socket] = []

    def next_connection(self) -> tuple[int, str]:
        with self._lock:
            self.connections += 1
            number = self.connections
        behaviour = self._behaviours[min(number, len(self._behaviours)) - 1]
        return number, behaviour

    def drop_connections(self) -> None:
        """Close every connection so far, as a camera that restarts does."""
        for sock in self.open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def mjpeg_camera(behaviours: list[str]) -> Iterator[tuple[str, _Server]]:
    """(URL, server) of a camera whose nth connection behaves as `behaviours[n-1]` (the last
    behaviour repeats)."""
    server = _Server(behaviours)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/video.mjpg", server
    finally:
        server.closed.set()
        server.shutdown()
        server.server_close()
