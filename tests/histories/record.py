"""Record the workflow histories of this release: `python -m tests.histories.record`.

Runs every workflow type through representative paths (tests/histories/paths.py) on the real
servers the test suite starts: the local stack (Temporal dev server, Kafka broker, Valkey, the
local DashScope server, the notification receivers) and Temporal's time-skipping test server
(for paths that wait minutes: escalation ladders, quiet hours, auto-resolve, expiry). Each
finished history (or, for a path that ends open, the history as far as it got) is written as
`tests/histories/<release>/<name>.json` (`WorkflowHistory.to_json()`, the format of
`temporal workflow show --output json`), with a README.md listing them.

A release's histories are never overwritten: an existing directory is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack.localstack.services import venv_binary
from devstack.localstack.stack import LocalStack
from riskflow.config.settings import Settings
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import ensure_topics
from tests.conftest import DashScopeAdmin, ReceiverAdmin, local_settings
from workers.common.client import connect
from workers.replay.replay import replay_deps, replay_worker
from workers.worker.worker import WorkerDeps, build_worker, worker_deps

HERE = Path(__file__).resolve().parent
DEV_QUEUE, SKIP_QUEUE, REPLAY_QUEUE = "histories-dev", "histories-skip", "histories-replay"
DEV, SKIP = "dev server", "time-skipping"  # where a history was recorded


@dataclass
class Row:
    name: str
    workflow_type: str
    events: int
    server: str
    what: str


@dataclass
class Recorder:
    """The servers, clients and workers a path drives, and what was written."""

    out: Path
    settings: Settings
    stack: Endpoints
    dev: Client  # the local stack's Temporal dev server (real time)
    skip: WorkflowEnvironment  # the time-skipping test server
    deps: WorkerDeps
    dashscope: DashScopeAdmin
    receiver: ReceiverAdmin
    rows: list[Row] = field(default_factory=list)

    async def save(
        self, name: str, handle: WorkflowHandle[Any, Any], server: str, what: str
    ) -> None:
        """Write the handle's history (its run, or the latest run) as `<name>.json`."""
        history = await handle.fetch_history()
        path = self.out / f"{name}.json"
        if path.exists():
            raise FileExistsError(f"{path}: two paths of one name")
        path.write_text(history.to_json() + "\n", encoding="utf-8")
        started = history.events[0].workflow_execution_started_event_attributes
        row = Row(name, started.workflow_type.name, len(history.events), server, what)
        self.rows.append(row)
        logging.info("%s: %s, %d events (%s)", name, row.workflow_type, row.events, server)


RecordPath = Callable[[Recorder], Awaitable[None]]


def expect(holds: bool, what: str) -> None:
    """A path checks it was taken: one that went elsewhere would record something else."""
    if not holds:
        raise RuntimeError(f"the path was not taken: {what}")


def traced(client: Client) -> Client:
    """The same server with the tracing interceptor every riskflow client has
    (`workers.common.client.connect`), so the time-skipping worker runs as a deployed one does."""
    config = client.config()
    config["interceptors"] = [*config["interceptors"], TracingInterceptor()]
    return Client(**config)


@contextlib.asynccontextmanager
async def servers(
    state_dir: Path,
) -> AsyncIterator[tuple[Settings, Endpoints, WorkflowEnvironment]]:
    """The local stack and the time-skipping server, on free ports, stopped on the way out."""
    settings = local_settings(state_dir)
    local = LocalStack(settings)
    try:
        await local.up()
        await ensure_topics(local.endpoints.kafka, settings.kafka)
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=venv_binary("temporal-test-server"),
            data_converter=pydantic_data_converter,
        )
        try:
            yield settings, local.endpoints, env
        finally:
            await env.shutdown()
    finally:
        local.down()


async def record(out: Path, paths: list[RecordPath]) -> list[Row]:
    """Run `paths` in order on fresh servers, writing their histories into `out`."""
    with tempfile.TemporaryDirectory(prefix="histories-") as tmp:
        async with servers(Path(tmp)) as (settings, stack, env):
            dev = await connect(stack.temporal, settings.temporal.namespace)
            async with (
                worker_deps(settings, stack) as deps,
                replay_deps(settings, stack) as rdeps,
                build_worker(dev, settings, deps, DEV_QUEUE),
                build_worker(traced(env.client), settings, deps, SKIP_QUEUE),
                replay_worker(dev, settings, rdeps, REPLAY_QUEUE),
            ):
                dashscope = DashScopeAdmin(stack.dashscope.removesuffix("/api/v1"))
                receiver = ReceiverAdmin(stack.receiver)
                rec = Recorder(out, settings, stack, dev, env, deps, dashscope, receiver)
                try:
                    for path in paths:
                        logging.info("path %s", path.__name__)
                        await dashscope.reset()
                        await path(rec)
                    rejected = await receiver.rejections()
                    if rejected:
                        raise RuntimeError(f"the receivers rejected notifications: {rejected}")
                finally:
                    await dashscope.close()
                    await receiver.close()
    return rec.rows


def readme(release: str, source: str, rows: list[Row]) -> str:
    lines = [
        f"# Workflow histories of release {release}",
        "",
        "Recorded by `python -m tests.histories.record`, from",
        f"{source}.",
        "Replayed on the current code by tests/test_replay_histories.py. Never edit or",
        "overwrite these files: a new release's histories go into a directory of their own.",
        "",
        "| file | workflow type | events | server | path |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: r.name):
        lines.append(f"| {r.name}.json | {r.workflow_type} | {r.events} | {r.server} | {r.what} |")
    return "\n".join(lines) + "\n"


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=HERE, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def source() -> str:
    """The commit whose workflow code runs, and whether that code had local changes."""
    changed = git("status", "--porcelain", "--", "../../workflows", "../../activities")
    return f"the code of commit {git('rev-parse', 'HEAD')}" + (
        " WITH UNCOMMITTED CHANGES to workflows/ or activities/" if changed else ""
    )


def main(argv: list[str] | None = None) -> int:
    from tests.histories.paths import PATHS

    parser = argparse.ArgumentParser(prog="python -m tests.histories.record", description=__doc__)
    parser.add_argument("--release", help="directory name (default: the commit, short)")
    parser.add_argument("--only", action="append", choices=[p.__name__ for p in PATHS])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    release = args.release or git("rev-parse", "--short=7", "HEAD")
    out = HERE / release
    if out.exists():
        print(f"{out} exists: a release's histories are never overwritten", file=sys.stderr)
        return 2
    paths = [p for p in PATHS if not args.only or p.__name__ in args.only]
    out.mkdir()
    try:
        rows = asyncio.run(record(out, paths))
    except BaseException:
        for written in out.iterdir():
            written.unlink()
        out.rmdir()
        raise
    (out / "README.md").write_text(readme(release, source(), rows), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{len(rows)} histories, {size / 1024:.0f} KiB, in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
