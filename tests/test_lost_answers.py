"""Key pool answers that never reach their caller, and a Redis that stalls: no slot is held by a
lease nobody has. A grant asked again under its lease id is the same grant (an acquire_lease
attempt whose answer was lost, retried by Temporal, gets the lease back); a grant whose answer
was lost inside lease_and_call is released; a release Redis did not take is retried until it
does; a worker started while Redis is stalled waits for it instead of exiting. On the real
Valkey (single and cluster) and on a Valkey of the test's own that it stops (SIGSTOP)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import RedisError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.keypool import KeyPool
from activities.lease import LeaseActivities
from activities.llm import LLMActivities
from activities.releases import Releases
from devstack.localstack.process import free_port
from devstack.localstack.services import valkey_binary
from riskflow.config.keys import KeyRing
from riskflow.config.settings import Settings
from riskflow.contracts import failures as E
from riskflow.contracts.assessment import AssessmentTask
from riskflow.contracts.lease import LeasedCallInput, LeaseRequest
from riskflow.errors import KeyPoolUnavailable
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import RedisClient, redis_client
from tests.conftest import eventually
from tests.test_keypool import keys_config, pool_for
from workers.worker.worker import worker_deps

ONE_KEY = {"key_id": "k", "qps_limit": 100, "rpm_limit": 1000, "max_concurrency": 2}
OTHER_KEY = {**ONE_KEY, "key_id": "l"}  # a second grant would go to the key with more room


async def in_flight(pool: KeyPool) -> int:
    return sum(k.in_flight for k in await pool.snapshot())


async def test_asking_again_under_one_lease_id_gets_the_same_lease(store: RedisClient) -> None:
    pool = await pool_for(store, keys_config(ONE_KEY, OTHER_KEY))
    first = await pool.acquire(lease_id="asked-twice")
    again = await pool.acquire(lease_id="asked-twice")
    assert first.lease is not None and again.lease == first.lease
    assert await in_flight(pool) == 1  # one slot, not two
    other = await pool.acquire()
    assert other.lease is not None and other.lease.lease_id != "asked-twice"
    assert await pool.release("asked-twice", "unused")
    assert await in_flight(pool) == 1
    anew = await pool.acquire(lease_id="asked-twice")  # released: a grant of its own again
    assert anew.lease is not None and anew.lease != first.lease and await in_flight(pool) == 2


class LostReply(KeyPool):
    """A pool whose acquire runs in Redis but whose answer never arrives (a reply that timed
    out, a connection that dropped after the script ran)."""

    async def _run(self, op: str, lease_id: str, *args: Any) -> Any:
        reply = await super()._run(op, lease_id, *args)
        if op == "acquire":
            raise KeyPoolUnavailable("key pool store unreachable: reply lost")
        return reply


def attempt(number: int, activity_id: str = "7") -> activity.Info:
    info = ActivityEnvironment.default_info()
    return replace(info, attempt=number, activity_id=activity_id, workflow_run_id="run-1")


async def test_attempts_of_one_acquire_lease_activity_hold_one_lease(store: RedisClient) -> None:
    """Attempt 1's grant is lost (Temporal sees an error, or the attempt completes after its
    start-to-close timeout); attempt 2 of the same activity gets that lease, not another."""
    config = keys_config(ONE_KEY, OTHER_KEY)
    pool = await pool_for(store, config)
    request = LeaseRequest(assessment_id="a-1")
    first = ActivityEnvironment()
    first.info = attempt(1)
    with pytest.raises(KeyPoolUnavailable):
        await first.run(LeaseActivities(LostReply(store, config.scheduler)).acquire_lease, request)
    assert await in_flight(pool) == 1  # granted in Redis, unknown to the workflow
    second = ActivityEnvironment()
    second.info = attempt(2)
    result = await second.run(LeaseActivities(pool).acquire_lease, request)
    assert result.lease is not None and await in_flight(pool) == 1
    other = ActivityEnvironment()
    other.info = attempt(1, activity_id="8")  # the workflow's next lease: another slot
    assert (await other.run(LeaseActivities(pool).acquire_lease, request)).lease is not None
    assert await in_flight(pool) == 2


async def test_a_grant_lost_inside_lease_and_call_is_released(store: RedisClient) -> None:
    config = keys_config(ONE_KEY)
    pool = await pool_for(store, config)
    lost = LostReply(store, config.scheduler)
    llm = LLMActivities(lost, KeyRing.from_environment(config), object(), store, config.scheduler)  # type: ignore[arg-type]
    task = AssessmentTask(
        assessment_id="a-2", camera_id="cam", model="m", system_prompt="s", user_prompt="u"
    )
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(
            llm.lease_and_call, LeasedCallInput(assessment_id="a-2", task=task)
        )
    assert raised.value.type == E.LEASE_LOST
    assert await in_flight(pool) == 0  # the grant nobody received holds no slot


@dataclass
class OwnValkey:
    url: str
    process: subprocess.Popen[bytes]

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        """Stopped (SIGSTOP: it accepts connections and answers nothing) until the block ends."""
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[OwnValkey]:
    port = free_port()
    argv = [valkey_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path)]
    argv += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        yield OwnValkey(f"redis://127.0.0.1:{port}/0", process)
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        process.wait(10)


@pytest.fixture
async def own_store(own_valkey: OwnValkey) -> AsyncIterator[RedisClient]:
    client = redis_client(own_valkey.url, timeout_seconds=0.5)

    async def up() -> bool:
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False

    await eventually(up, within=20)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_release_redis_did_not_take_frees_the_slot_once_it_answers(
    own_valkey: OwnValkey, own_store: RedisClient, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await pool_for(own_store, keys_config(ONE_KEY))
    lease = (await pool.acquire(ttl_seconds=600)).lease
    assert lease is not None
    releases = Releases(pool, first_retry_seconds=0.1)
    with own_valkey.stalled(), caplog.at_level(logging.WARNING):
        await releases.release(lease.lease_id, "ok", lease.expires_at_ms)  # returns: retried
        assert releases.retrying == 1 and "not released" in caplog.text
    # Redis answers again: the slot is free long before the lease's ten minutes end.

    async def released() -> bool:
        return releases.retrying == 0 and await in_flight(pool) == 0

    await eventually(released, within=60)


async def test_a_worker_started_while_redis_is_stalled_serves_once_it_answers(
    own_valkey: OwnValkey,
    own_store: RedisClient,
    settings: Settings,
    stack: Endpoints,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's start (server version, key pool sync) meets a stalled Redis: it waits and
    retries instead of exiting, and serves with the pool synced once Redis answers."""
    endpoints = replace(stack, redis=own_valkey.url)

    async def start() -> list[str]:
        async with worker_deps(settings, endpoints) as deps:
            pool = KeyPool(deps.redis, settings.keys.scheduler)
            return [k.key_id for k in await pool.snapshot()]

    async def waiting() -> bool:
        return "Redis unreachable" in caplog.text

    with caplog.at_level(logging.WARNING):
        with own_valkey.stalled():
            starting = asyncio.create_task(start())
            await eventually(waiting, within=60)  # it met the stall, and it is still trying
            assert not starting.done()
        keys = await asyncio.wait_for(starting, 60)
    assert keys == sorted(k.key_id for k in settings.keys.api_keys)
