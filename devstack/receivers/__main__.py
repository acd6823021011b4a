"""`python -m devstack.receivers --config-dir config` (ports from the settings'
`local.receiver_port` and `local.smtp_port`, or `--port` / `--smtp-port`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from devstack.receivers.runtime import Receiver
from riskflow.config.channels import ChannelSecrets
from riskflow.config.loader import load_settings
from riskflow.infra.endpoints import receiver_cert_file

logger = logging.getLogger(__name__)


async def serve(receiver: Receiver, config_dir: str | None) -> None:
    settings = load_settings(config_dir)
    # Only channels without an address of their own come here; the others' secrets may be
    # set for the worker alone.
    notifications = settings.notifications.local_only()
    await receiver.start(notifications, ChannelSecrets.from_environment(notifications))
    logger.info("receiver on %s, SMTP on port %s", receiver.url, receiver.smtp_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config-dir", default=None)
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--smtp-port", type=int, default=None)
    parser.add_argument("--cert-file", default=None, help="where to write the SMTP certificate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    local = load_settings(args.config_dir).local
    receiver = Receiver(
        host=args.host or local.host,
        http_port=args.port or local.receiver_port,
        smtp_port=args.smtp_port or local.smtp_port,
        cert_file=Path(args.cert_file) if args.cert_file else receiver_cert_file(local.state_dir),
    )
    asyncio.run(serve(receiver, args.config_dir))


if __name__ == "__main__":
    main()
