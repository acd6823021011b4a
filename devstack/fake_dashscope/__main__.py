"""`python -m devstack.fake_dashscope --port 8089 --config-dir config`"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from devstack.fake_dashscope.server import build_app
from riskflow.config.keys import KeyRing
from riskflow.config.loader import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--config-dir", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings(args.config_dir)
    ring = KeyRing.from_environment(settings.keys)
    web.run_app(build_app(settings.keys, ring), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
