"""A test RTSP server (GStreamer, run with the system python: /usr/bin/python3).

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --frames DIR
serves rtsp://127.0.0.1:PORT/cam : the JPEG files DIR/frame000.jpg... looped at 5 fps.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--frames", required=True)
    parser.add_argument("--fps", type=int, default=5)
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( multifilesrc location={args.frames}/frame%03d.jpg index=0 loop=true "
        f'caps="image/jpeg,framerate={args.fps}/1" ! jpegparse ! rtpjpegpay name=pay0 pt=26 )'
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    server.attach(None)
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print(f"serving rtsp://127.0.0.1:{args.port}/cam", flush=True)
    loop.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
