"""bench.priority's workflows: each records, through one activity, when it got to run."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

ORDER: list[str] = []  # names recorded by `record`, in the order their activities ran


@activity.defn
async def record(name: str) -> None:
    ORDER.append(name)


@workflow.defn
class FirstTask:
    @workflow.run
    async def run(self, name: str) -> None:
        await workflow.execute_activity(record, name, start_to_close_timeout=timedelta(minutes=5))


@workflow.defn
class Parent:
    """Starts `FirstTask` as a child on `<its queue>-child`, with no priority of its own."""

    @workflow.run
    async def run(self, name: str) -> None:
        await workflow.execute_child_workflow(
            FirstTask.run,
            name,
            id=f"{workflow.info().workflow_id}-child",
            task_queue=f"{workflow.info().task_queue}-child",
        )
