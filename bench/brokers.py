"""The local stack's Kafka-protocol brokers side by side: start time, memory, aiokafka
throughput, kcat and confluent-kafka (librdkafka) compatibility, durability across a restart
and a kill -9, whether a commit from a member the group moved on from is refused, and what a
kill -9'd consumer-group member does to the group.

    python -m bench.brokers                       # every `local.kafka_broker` choice
    python -m bench.brokers --broker noida-db
    python -m bench.brokers --bootstrap 127.0.0.1:9092 --name other   # clients only

Prints one JSON line per broker (also bench/results/brokers.json). Figures: seconds, MiB,
messages per second (1 KiB values). The README's broker table comes from this script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, get_args

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack.localstack.process import ManagedProcess, on_free_ports
from devstack.localstack.services import check_kafka, local_services, wait_healthy
from riskflow.config.loader import load_settings
from riskflow.config.services import LocalStackSettings

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = Path(__file__).resolve().parent.parent / "config"
VALUE = b"x" * 1024


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of `pid` in MiB, from /proc (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        return None
    return None


async def create_topic(bootstrap: str, partitions: int = 3) -> str:
    """A new topic (left to auto-creation where the broker has no CreateTopics)."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    except Exception as exc:
        print(f"create_topics failed ({type(exc).__name__}), relying on auto-creation")
    finally:
        await admin.close()
    return topic


async def produce(bootstrap: str, topic: str, count: int) -> float:
    """Produce `count` 1 KiB records with acks=all; returns records per second."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        futures = [await producer.send(topic, VALUE) for _ in range(count)]
        await asyncio.gather(*futures)
        return count / (time.monotonic() - started)
    finally:
        await producer.stop()


async def consume(
    bootstrap: str, topic: str, count: int, within: float = 60.0
) -> tuple[int, float]:
    """Read `topic` from the start until `count` records or `within` seconds: (records, rate)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen, started = 0, time.monotonic()
    try:
        while seen < count and time.monotonic() - started < within:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            seen += sum(len(records) for records in batch.values())
        return seen, seen / (time.monotonic() - started)
    finally:
        await consumer.stop()


def kcat(*args: str, stdin: bytes | None = None, timeout: float = 30) -> tuple[int, str]:
    binary = shutil.which("kcat")
    if binary is None:
        return -1, "kcat not installed"
    try:
        done = subprocess.run(
            [binary, *args], input=stdin, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return -2, "timed out"
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


def confluent_round_trip(bootstrap: str, topic: str, lines: list[str]) -> dict[str, Any]:
    """kcat produces, confluent-kafka consumes in a group and commits; then the reverse."""
    from confluent_kafka import Consumer, Producer

    result: dict[str, Any] = {}
    rc, out = kcat("-b", bootstrap, "-P", "-t", topic, stdin="\n".join(lines).encode())
    result["kcat_produce"] = rc == 0 or out[-200:]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[str] = []
    deadline = time.monotonic() + 30
    while len(got) < len(lines) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            got.append((message.value() or b"").decode())
    try:
        consumer.commit(asynchronous=False)
        result["confluent_group_commit"] = True
    except Exception as exc:
        result["confluent_group_commit"] = str(exc)[:200]
    consumer.close()
    result["confluent_consume"] = sorted(got) == sorted(lines)
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 20000})
    back, failed = [f"c-{line}" for line in lines], []
    for line in back:
        producer.produce(topic, line.encode(), on_delivery=lambda err, _: failed.append(err))
    left = producer.flush(30)
    errors = [str(err) for err in failed if err is not None]
    result["confluent_produce"] = (left == 0 and not errors) or (errors or ["not flushed"])[0]
    rc, out = kcat("-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q")
    result["kcat_consume"] = (rc == 0 and set(back) <= set(out.split())) or out[-200:]
    return result


class Broker:
    """One broker of the local stack on free ports, started and stopped by pid."""

    def __init__(self, name: str, state_dir: Path) -> None:
        local: LocalStackSettings = on_free_ports(state_dir).model_copy(
            update={"kafka_broker": name}
        )
        settings = load_settings(CONFIG, local=local)
        self.service = next(s for s in local_services(settings) if s.name == "kafka")
        self.process = ManagedProcess("kafka", state_dir, self.service.spec_factory)
        self.bootstrap = self.service.address
        state_dir.mkdir(parents=True, exist_ok=True)

    async def start(self) -> float:
        started = time.monotonic()
        self.process.start()
        await wait_healthy(lambda: check_kafka(self.bootstrap), 60)
        return round(time.monotonic() - started, 2)

    def kill(self, sig: signal.Signals) -> None:
        pid = self.process.pid()
        assert pid is not None
        os.kill(pid, sig)
        deadline = time.monotonic() + 20
        while self.process.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        self.process.stop()


async def durability(broker: Broker, sig: signal.Signals, count: int = 1000) -> str:
    """Records (acked, acks=all) still readable after the broker is stopped with `sig`."""
    topic = await create_topic(broker.bootstrap)
    await produce(broker.bootstrap, topic, count)
    broker.kill(sig)
    await broker.start()
    try:
        seen, _ = await consume(broker.bootstrap, topic, count, within=15)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return f"{seen}/{count}"


MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer
async def main():
    c = AIOKafkaConsumer(sys.argv[3], bootstrap_servers=sys.argv[1], group_id=sys.argv[2],
                         session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await c.start()
    while True:
        await c.getmany(timeout_ms=500)
        if c.assignment():
            print("assigned", flush=True)
asyncio.run(main())
"""


def killed_member(bootstrap: str, topic: str) -> str:
    """An aiokafka group member is kill -9'd; seconds until a new member gets partitions."""
    group = f"g-{uuid.uuid4().hex[:6]}"
    argv = [sys.executable, "-c", MEMBER, bootstrap, group, topic]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert first.stdout is not None
    first.stdout.readline()  # assigned
    first.send_signal(signal.SIGKILL)
    first.wait()
    started = time.monotonic()
    second = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert second.stdout is not None
    ready, _, _ = select.select([second.stdout], [], [], 60)
    second.kill()
    second.wait()
    if not ready:
        return "never reassigned within 60 s"
    return f"reassigned after {time.monotonic() - started:.1f} s"


async def stale_commit(bootstrap: str) -> str:
    """A member holds a batch past max_poll_interval_ms (so the group moves on), then commits:
    Apache Kafka refuses that commit (the batch is read again)."""
    topic = await create_topic(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    await producer.send_and_wait(topic, VALUE, key=b"k")
    await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_interval_ms=1500,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    try:
        while not await consumer.getmany(timeout_ms=500):
            pass
        await asyncio.sleep(4)  # past max_poll_interval_ms
        try:
            await consumer.commit()
        except Exception as exc:
            return f"refused ({type(exc).__name__})"
        return "accepted"
    finally:
        await consumer.stop()


async def clients(bootstrap: str, count: int) -> dict[str, Any]:
    topic = await create_topic(bootstrap)
    figures: dict[str, Any] = {
        "aiokafka_produce_per_s": round(await produce(bootstrap, topic, count))
    }
    seen, rate = await consume(bootstrap, topic, count)
    figures["aiokafka_consume_per_s"] = round(rate) if seen == count else f"{seen}/{count}"
    lines = [f"m{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
    figures.update(await asyncio.to_thread(confluent_round_trip, bootstrap, topic + "k", lines))
    figures["stale_member_commit"] = await stale_commit(bootstrap)
    figures["killed_group_member"] = await asyncio.to_thread(
        killed_member, bootstrap, await create_topic(bootstrap)
    )
    return figures


async def measure(name: str, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(name, Path(tmp))
        figures: dict[str, Any] = {"broker": name, "start_seconds": await broker.start()}
        figures["rss_idle_mib"] = rss_mib(broker.process.pid())
        try:
            figures.update(await clients(broker.bootstrap, count))
            figures["rss_loaded_mib"] = rss_mib(broker.process.pid())
            figures["after_sigterm_restart"] = await durability(broker, signal.SIGTERM)
            figures["after_kill_9_restart"] = await durability(broker, signal.SIGKILL)
        except Exception as exc:
            figures["error"] = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            broker.process.stop()
        return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    choices = get_args(LocalStackSettings.model_fields["kafka_broker"].annotation)
    parser.add_argument("--broker", action="append", choices=choices)
    parser.add_argument("--bootstrap", help="measure the clients only, on a running broker")
    parser.add_argument("--name", default="external")
    parser.add_argument("--count", type=int, default=20_000, help="records for throughput")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    rows = []
    if args.bootstrap:
        rows.append({"broker": args.name, **asyncio.run(clients(args.bootstrap, args.count))})
    else:
        for name in args.broker or choices:
            rows.append(asyncio.run(measure(name, args.count)))
    for row in rows:
        print(json.dumps(row), flush=True)
    (RESULTS / "brokers.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
