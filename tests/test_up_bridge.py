"""The bridge under `riskflow up` on the local stack's default broker (noida-db), which keeps a
kill -9'd group member as the group's leader (issue 24): the default static assignment reads
on after every kill -9, and with group assignment `riskflow status` says the bridge reads no
partition instead of calling it healthy."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from devstack.simulate import scene_event
from riskflow.config.settings import Settings
from riskflow.contracts.incidents import incident_workflow_id
from riskflow.infra.kafka import make_producer
from riskflow.names import DETECTION_TOPIC
from tests.conftest import eventually, local_settings
from tests.test_up import _by_name, _cli, _env
from workers.common.client import connect
from workers.common.significance import assess_significance
from workers.supervisor.config import Layout
from workers.supervisor.health import BridgeReading
from workers.supervisor.supervisor import ProcessInfo, scrape

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

KILLS = 5


async def send_fall(settings: Settings, camera: str) -> str:
    """A fall on `camera`, as the edge sends it; the id of the incident it must open."""
    event = scene_event(camera, 0, datetime.now(UTC), people=2, falls=1)
    situation = assess_significance(event, settings.significance)
    config = settings.incident_config(camera)
    assert situation is not None and situation.severity >= config.min_rule_severity
    producer = make_producer(f"127.0.0.1:{settings.local.kafka_port}", settings.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            DETECTION_TOPIC, event.model_dump_json().encode(), key=camera.encode()
        )
    finally:
        await producer.stop()
    return incident_workflow_id(camera, config.family(situation.rule))


async def started(client: Client, workflow_ids: list[str]) -> bool:
    """Every one of these workflows has been started (an incident opened)."""
    for workflow_id in workflow_ids:
        try:
            await client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return False
    return True


def bridge_reading(env: dict[str, str]) -> BridgeReading | None:
    page, _ = scrape("127.0.0.1", int(env["RISKFLOW_METRICS__BRIDGE_PORT"]))
    return BridgeReading.parse(page) if page else None


async def restarted_bridge(layout: Layout, killed: int) -> ProcessInfo:
    """The bridge supervisord started again after `killed`, once it runs."""
    found: list[ProcessInfo] = []

    async def runs_again() -> bool:
        bridge = _by_name(layout)["bridge"]
        found[:] = [bridge]
        return bridge.state == "RUNNING" and bridge.pid not in (None, killed)

    await eventually(runs_again, within=120, interval=0.5)
    return found[0]


def incident_settings(settings: Settings) -> Settings:
    bridge = settings.bridge.model_copy(update={"mode": "incidents"})
    return settings.model_copy(update={"bridge": bridge})


async def test_a_bridge_killed_9_five_times_opens_the_next_incident_each_time(
    tmp_path: Path,
) -> None:
    """kill -9 the bridge five times in a row (the default static assignment): after each
    restart a fall sent while it was down and one sent after it came back each open their
    incident within 30 s; supervisord counts every restart and status calls it healthy."""
    settings = incident_settings(local_settings(tmp_path / "s"))
    env = _env(
        settings,
        RISKFLOW_BRIDGE__MODE="incidents",
        RISKFLOW_SUPERVISOR__START_SECONDS="5",  # a kill once it runs is a crash, not a bad start
    )
    layout = Layout(settings.local.state_dir)
    tag = uuid.uuid4().hex[:6]
    try:
        code, out = await _cli(env, "up", "--no-edge")
        assert code == 0, out
        client = await connect(
            f"127.0.0.1:{settings.local.temporal_port}", settings.temporal.namespace
        )
        bridge = _by_name(layout)["bridge"]
        for kill in range(KILLS):
            assert bridge.state == "RUNNING" and bridge.pid
            os.kill(bridge.pid, signal.SIGKILL)
            while_down = await send_fall(settings, f"kill-{tag}-{kill}-down")
            bridge = await restarted_bridge(layout, bridge.pid)
            after = await send_fall(settings, f"kill-{tag}-{kill}-up")
            await eventually(partial(started, client, [while_down, after]), within=30)
            reading = bridge_reading(env)
            assert reading is not None and reading.assigned == settings.kafka.partitions
        code, out = await _cli(env, "status")
        assert code == 0, out
        assert "no partitions" not in out
        assert _by_name(layout)["bridge"].restarts >= KILLS
        assert "(assignment: static)" in layout.log("bridge").read_text()
        exits = layout.daemon_log.read_text().count("exited: bridge (terminated by SIGKILL")
        assert exits == KILLS
    finally:
        code, out = await _cli(env, "down")
    assert code == 0, out


async def test_status_says_no_partitions_while_the_bridge_reads_none(tmp_path: Path) -> None:
    """Group assignment on noida-db: the bridge killed with -9 stays the group's leader, and
    the one started in its place is never assigned a partition. `status` says so (not
    healthy), from the bridge's metrics, instead of calling it healthy."""
    settings = local_settings(tmp_path / "s")
    env = _env(
        settings,
        RISKFLOW_BRIDGE__ASSIGNMENT="group",
        RISKFLOW_SUPERVISOR__START_SECONDS="5",
        RISKFLOW_BRIDGE__NO_PARTITION_ALARM_SECONDS="3",
    )
    layout = Layout(settings.local.state_dir)
    partitions = settings.kafka.partitions
    try:
        code, out = await _cli(env, "up", "--no-edge")  # waits until the bridge reads
        assert code == 0, out
        assert "no partitions" not in out
        reading = bridge_reading(env)
        assert reading is not None and reading.assigned == partitions
        bridge = _by_name(layout)["bridge"]
        assert bridge.pid
        os.kill(bridge.pid, signal.SIGKILL)
        await restarted_bridge(layout, bridge.pid)

        async def reads_none() -> bool:
            now = bridge_reading(env)
            return now is not None and now.topic_partitions > 0 and now.unassigned_seconds > 3

        await eventually(reads_none, within=60, interval=0.5)
        code, out = await _cli(env, "status")
        assert code == 1, out
        expected = f"bridge: no partitions: has read none of the {partitions} of {DETECTION_TOPIC}"
        assert expected in out, out
        assert "not healthy" in out
    finally:
        code, out = await _cli(env, "down")
    assert code == 0, out
