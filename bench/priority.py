"""Task-queue priority on the Temporal dev server: does one high-priority workflow overtake a
backlog of low-priority ones on the same queue?

`--backlog` workflows are started with priority key 5 (the lowest) on a fresh task queue that
no worker polls, then one with key 1 (the highest); then a worker with one workflow-task slot
and one activity slot drains the queue, each workflow's one activity recording its name. The
worker starts once matching holds every task (DescribeTaskQueue's backlog count): a start
returns before its task reaches matching, and the tasks do not arrive in start order. The
figure is the high one's position in that order: 0 = first, `backlog` = last. Baseline in the
same run, on the same server: the same starts without priority keys (FIFO).

Each server is a fresh dev server started with the local stack's command:

- `local_stack`: as `riskflow dev up` starts it (`TEMPORAL_DYNAMIC_CONFIG`: the priority
  matcher, one write partition per task queue);
- `stock`: the same command without any `--dynamic-config-value` (the dev server's defaults);
- `classic_matcher`: the local stack's with `matching.useNewMatcher=false`.

On the local stack's server it also measures inheritance: the workflows start with their
priority key, the backlog is of what they start without a priority of their own (`activity`:
their activity, waiting for an activity worker; `child`: a child workflow on a queue of its
own, waiting for a worker there).

    python -m bench.priority [--backlog 30] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import Priority
from temporalio.worker import Worker

from bench._stack import bench_settings, report
from bench.first_task import ORDER, FirstTask, Parent, record
from devstack.localstack.process import ManagedProcess
from devstack.localstack.services import local_services, wait_healthy
from workers.common.client import connect

CONFIG = Path(__file__).resolve().parent.parent / "config"
LOW, HIGH = 5, 1


def _strip_dynamic_config(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if not skip and arg != "--dynamic-config-value":
            out.append(arg)
        skip = arg == "--dynamic-config-value"
    return out


SERVERS: dict[str, Callable[[list[str]], list[str]]] = {
    "local_stack": lambda argv: argv,
    "stock": _strip_dynamic_config,
    "classic_matcher": lambda argv: [
        "matching.useNewMatcher=false" if a == "matching.useNewMatcher=true" else a for a in argv
    ],
}


@contextlib.asynccontextmanager
async def dev_server(name: str, state_dir: Path) -> AsyncIterator[tuple[Client, list[str]]]:
    """A fresh dev server started with the local stack's command, changed as SERVERS says."""
    settings = bench_settings(state_dir, CONFIG)
    (service,) = [s for s in local_services(settings) if s.name == "temporal"]
    spec = service.spec_factory()
    spec = dataclasses.replace(spec, argv=SERVERS[name](spec.argv))
    process = ManagedProcess("temporal", state_dir, lambda: spec)
    process.start()
    try:
        await wait_healthy(service.health, 90)
        flags = [a for a in spec.argv if "=" in a and a.startswith("matching.")]
        yield await connect(service.address, settings.temporal.namespace), flags
    finally:
        process.stop()


async def _start(client: Client, kind: str, queue: str, name: str, key: int | None) -> None:
    await client.start_workflow(
        Parent.run if kind == "child" else FirstTask.run,
        name,
        id=f"{queue}-{name}",
        task_queue=queue,
        priority=Priority(priority_key=key) if key else Priority.default,
    )


async def _backlogged(client: Client, queue: str, kind: str, count: int) -> None:
    """Until matching holds `count` tasks of the kind that waits (a start returns before its
    task reaches matching, and those tasks do not arrive in start order)."""
    activities = kind == "activity"
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
        if activities
        else TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        report_stats=True,
    )
    for _ in range(1200):
        response = await client.workflow_service.describe_task_queue(request)
        if response.stats.approximate_backlog_count == count:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{queue}: {count} {kind} tasks never backlogged")


def _worker(client: Client, queue: str, drains: bool, workflows: bool = True) -> Worker:
    """A worker on `queue`; the one that `drains` the backlog takes one task at a time, and
    only it runs the recording activity."""
    return Worker(
        client,
        task_queue=queue,
        workflows=[FirstTask, Parent] if workflows else [],
        activities=[record] if drains else [],
        max_concurrent_workflow_tasks=1 if drains else None,
        max_concurrent_activities=1 if drains else None,
    )


async def position(client: Client, kind: str, backlog: int, prioritised: bool) -> int:
    """Where the high-priority workflow's record lands (0 = first)."""
    ORDER.clear()
    queue = f"prio-{uuid.uuid4().hex[:10]}"
    low, high = (LOW, HIGH) if prioritised else (None, None)
    names = [*(f"low-{i}" for i in range(backlog)), "high"]
    async with contextlib.AsyncExitStack() as stack:
        if kind != "workflow":  # the workflows run at once; what they start waits
            await stack.enter_async_context(_worker(client, queue, drains=False))
        for name in names:
            await _start(client, kind, queue, name, high if name == "high" else low)
        drain = f"{queue}-child" if kind == "child" else queue
        await _backlogged(client, drain, kind, len(names))
        # one worker per queue and task type: the activity backlog gets an activity worker
        worker = _worker(client, drain, drains=True, workflows=kind != "activity")
        await stack.enter_async_context(worker)
        for _ in range(3000):
            if len(ORDER) == len(names):
                break
            await asyncio.sleep(0.1)
    return ORDER.index("high")


async def measure(backlog: int, runs: int) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for name in SERVERS:
        kinds = ["workflow", "activity", "child"] if name == "local_stack" else ["workflow"]
        with tempfile.TemporaryDirectory(prefix=f"bench-priority-{name}-") as tmp:
            async with dev_server(name, Path(tmp)) as (client, flags):
                rows: dict[str, Any] = {"dynamic_config": flags}
                for kind in kinds:
                    rows[kind] = {
                        mode: [
                            await position(client, kind, backlog, mode == "priority")
                            for _ in range(runs)
                        ]
                        for mode in ("priority", "fifo")
                    }
                servers[name] = rows
        print(name, servers[name], file=sys.stderr, flush=True)
    return servers


def first_share(positions: list[int]) -> float:
    return sum(p == 0 for p in positions) / len(positions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    servers = asyncio.run(measure(args.backlog, args.runs))
    report(
        "priority",
        {
            "backlog": args.backlog,
            "runs": args.runs,
            "positions": servers,  # of the high-priority one: 0 = first, backlog = last
            "ratio_high_first_local_stack": first_share(
                servers["local_stack"]["workflow"]["priority"]
            ),
            "ratio_high_first_fifo_baseline": first_share(
                servers["local_stack"]["workflow"]["fifo"]
            ),
            "target": {"ratio_high_first_local_stack": 1.0},
        },
    )


if __name__ == "__main__":
    main()
