"""The console served from a thread of the test process (its own event loop), on a free
loopback port, with test users and tokens: operator `op`, viewer `viewer`, admin `boss`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from console.app import create_app
from console.auth import hash_password, hash_token
from devstack.localstack.process import free_port
from riskflow.config.console import ConsoleSettings, ConsoleToken, ConsoleUser, Role
from riskflow.config.settings import Settings
from riskflow.config.sites import SiteConfig

PASSWORD = "correct horse battery staple"
OPERATOR_TOKEN = "op-token-0123456789abcdef0123456789abcdef"
VIEWER_TOKEN = "viewer-token-0123456789abcdef0123456789ab"
_HASH = hash_password(PASSWORD)


def console_settings(settings: Settings, cameras: list[str], **console: object) -> Settings:
    """`settings` with a site of `cameras` and the test users and tokens."""
    users = [
        ConsoleUser(username=name, password_hash=_HASH, role=role)
        for name, role in (("op", Role.OPERATOR), ("viewer", Role.VIEWER), ("boss", Role.ADMIN))
    ]
    tokens = [
        ConsoleToken(name="op-token", token_sha256=hash_token(OPERATOR_TOKEN), role=Role.OPERATOR),
        ConsoleToken(name="wall", token_sha256=hash_token(VIEWER_TOKEN), role=Role.VIEWER),
    ]
    config = ConsoleSettings(
        host="127.0.0.1", port=free_port(), users=users, tokens=tokens, poll_seconds=0.2, **console
    )
    site = SiteConfig(id="plant-t", name="Test plant", cameras=cameras)
    return settings.model_copy(update={"console": config, "sites": [site]})


@dataclass(frozen=True)
class RunningConsole:
    url: str
    settings: Settings


@contextlib.contextmanager
def running_console(settings: Settings) -> Iterator[RunningConsole]:
    """Serve the console in a thread until the block ends."""
    app = create_app(settings, "test-session-secret-" + "x" * 32)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.console.port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the console did not start")
        time.sleep(0.05)
    try:
        yield RunningConsole(f"http://127.0.0.1:{settings.console.port}", settings)
    finally:
        server.should_exit = True
        thread.join(15)
        if thread.is_alive():
            raise RuntimeError("the console did not stop within 15 s")
