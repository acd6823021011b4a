"""`riskflow replay`: the golden set through two candidates against the local DashScope server,
in shadow (no `camera:*` / `alerts:*` change, nothing published), within the key pool and a
budget; the report; recording from the live topic."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from devstack.simulate import scene_event
from riskflow.config.context import SiteContext
from riskflow.config.prices import Price, PriceTable
from riskflow.config.replay import ReplaySettings
from riskflow.config.settings import Settings
from riskflow.config.sites import SiteConfig
from riskflow.contracts.events import SnapshotRef
from riskflow.errors import ConfigError
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_producer
from riskflow.levels import RiskLevel
from riskflow.names import DETECTION_TOPIC, RESULTS_TOPIC, camera_alerts_key, camera_latest_key
from tests.conftest import CONFIG, DashScopeAdmin, cli_env, read_topic
from tests.golden import make_golden
from workers.replay.files import load_events
from workers.replay.replay import Budget, replay_to_files

GOLDEN = make_golden.PATH
CANDIDATES = """
candidates:
  - {name: current}
  - {name: generic-max, prompt: v1, model: qwen-max, vision_model: qwen-vl-max}
"""


def test_golden_set_is_what_the_generator_writes() -> None:
    text = GOLDEN.read_text(encoding="utf-8")
    snapshot = next(e.snapshot_b64 for e in load_events(GOLDEN) if e.snapshot_b64)
    assert text == make_golden.lines(snapshot)
    assert len(text) < 20_000  # small files only


async def _views(redis: Redis) -> dict[bytes, Any]:
    """Every `camera:*` and `alerts:*` key with its value."""
    views: dict[bytes, Any] = {}
    for pattern in ("camera:*", "alerts:*"):
        async for key in redis.scan_iter(match=pattern):
            kind = await redis.type(key)
            views[key] = await (redis.lrange(key, 0, -1) if kind == b"list" else redis.get(key))
    return views


def _settings(settings: Settings, concurrency: int = 4) -> Settings:
    site = SiteConfig(
        id="ward", language="zh-CN", cameras=["ward-2"], context=SiteContext(watches="a ward")
    )
    prices = PriceTable(models={"qwen-plus": Price(input_per_million=800, output_per_million=2000)})
    replay = ReplaySettings(concurrency=concurrency)
    return settings.model_copy(update={"sites": [site], "replay": replay, "prices": prices})


async def test_replay_of_the_golden_set_compares_two_candidates_in_shadow(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    tmp_path: Path,
) -> None:
    await redis.set(camera_latest_key("dock-1"), b'{"assessment_id": "live"}')
    await redis.lpush(camera_alerts_key("ward-2"), b'{"assessment_id": "live-alert"}')
    before = await _views(redis)
    (tmp_path / "candidates.yaml").write_text(CANDIDATES)
    files = await replay_to_files(
        _settings(settings),
        GOLDEN,
        tmp_path / "candidates.yaml",
        tmp_path / "out",
        Budget(),
        client=client,
    )
    report = json.loads(files.json_path.read_text())
    assert report["assessments_run"] == report["assessments_planned"] == 16
    current, generic = report["candidates"]["current"], report["candidates"]["generic-max"]
    assert current["assessed"] == generic["assessed"] == 8
    assert current["agreement_with_expected"] == 1.0 and current["agreement_with_labels"] == 0.833
    assert current["confusion_vs_expected"]["critical"] == {"critical": 1}
    assert current["prompt_version"] == "v2" and generic["prompt_version"] == "v1"
    assert current["models"] == ["qwen-plus", "qwen-vl-plus"]
    assert generic["models"] == ["qwen-max", "qwen-vl-max"]
    assert current["cost"] > 0 and generic["cost"] == 0  # qwen-max has no price configured
    assert current["input_tokens"] > generic["input_tokens"]  # the context costs tokens
    assert current["latency_ms_p95"] >= current["latency_ms_p50"] > 0
    [pair] = report["pairs"]
    assert pair["level_agreement"] == 1.0 and pair["score_delta_mean"] == 0
    markdown = files.markdown_path.read_text()
    assert "| **high** |" in markdown and "generic-max" in markdown
    # What the provider received: each candidate's prompt and model, the snapshot once each.
    requests = await dashscope_admin.requests()
    assert len(requests) == 16
    assert sum("rubric default-1" in json.dumps(r) for r in requests) == 8
    assert {r["model"] for r in requests if r["endpoint"] == "vision"} == {
        "qwen-vl-plus",
        "qwen-vl-max",
    }
    zh = [r for r in requests if "ward-2" in json.dumps(r) and "rubric" in json.dumps(r)]
    assert zh and all("Answer language: zh-CN" in json.dumps(r, ensure_ascii=False) for r in zh)
    # In shadow: views untouched, the staged snapshot gone, nothing published, no violation.
    assert await _views(redis) == before
    assert [k async for k in redis.scan_iter(match="snapshot:*:replay-*")] == []
    assert (await dashscope_admin.stats())["violations"] == 0
    run_id = report["run_id"]
    published = await read_topic(
        stack.kafka, RESULTS_TOPIC, lambda m: run_id in str(m.get("assessment_id")), 1, within=2
    )
    assert published == []


@pytest.mark.parametrize(
    "budget", [Budget(max_tokens=1), Budget(max_cost=0.000001)], ids=["tokens", "cost"]
)
async def test_replay_stops_at_a_budget(
    client: Client,
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    tmp_path: Path,
    budget: Budget,
) -> None:
    (tmp_path / "candidates.yaml").write_text(CANDIDATES.replace(", model: qwen-max", ""))
    files = await replay_to_files(
        _settings(settings, concurrency=1),
        GOLDEN,
        tmp_path / "candidates.yaml",
        tmp_path / "out",
        budget,
        client=client,
    )
    report = files.report
    assert report["budget"]["stopped_by_budget"] is True  # type: ignore[index]
    assert report["assessments_run"] == 1 < report["assessments_planned"]
    assert len(await dashscope_admin.requests()) == 1
    assert report["rows"][1]["levels"] == {"current": None, "generic-max": None}  # type: ignore[index]


def test_bad_replay_files_name_the_line_and_field(tmp_path: Path) -> None:
    from workers.replay.files import load_candidates

    events = tmp_path / "events.jsonl"
    good = GOLDEN.read_text().splitlines()[0]
    events.write_text(good + "\n" + good.replace('"frame_id": 0', '"frame_id": -1') + "\n")
    with pytest.raises(ConfigError, match=r"events\.jsonl:2: .*frame_id"):
        load_events(events)
    events.write_text(json.dumps(json.loads(good)["event"]) + "\n")  # a bare detection message
    assert load_events(events)[0].event.camera_id == "dock-1"
    candidates = tmp_path / "c.yaml"
    candidates.write_text("candidates:\n  - {name: a, temperature: 2}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: .*temperature"):
        load_candidates(candidates)
    candidates.write_text("candidates:\n  - {name: a}\n  - {name: a, prompt: v1}\n")
    with pytest.raises(ConfigError, match="unique"):
        load_candidates(candidates)
    candidates.write_text("candidates:\n  - {name: a, provider: openai}\n")
    with pytest.raises(ConfigError, match="provider"):
        load_candidates(candidates)


def test_report_percentiles_and_label_agreement() -> None:
    from workers.replay.report import percentile

    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([float(v) for v in range(1, 101)], 95) == 95.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert RiskLevel.HIGH.rank > RiskLevel.MEDIUM.rank
    assert sys.version_info >= (3, 11)


async def _cli(settings: Settings, *argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "--config-dir",
        str(CONFIG),
        *argv,
        env=cli_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_record_copies_a_cameras_events_and_snapshots_then_replays_them(
    settings: Settings,
    stack: Endpoints,
    redis: Redis,
    dashscope_admin: DashScopeAdmin,
    unique: str,
    tmp_path: Path,
) -> None:
    camera, other = f"rec-{unique}", f"other-{unique}"
    now = datetime.now(UTC)
    old = scene_event(camera, 1, now - timedelta(hours=3), people=1, falls=1)
    fall = scene_event(camera, 2, now, people=2, falls=1).model_copy(
        update={"snapshot": SnapshotRef(store="redis", ref=f"snapshot:{camera}:2")}
    )
    quiet = scene_event(camera, 3, now, people=0, falls=0)  # nothing the bridge would assess
    await redis.set(f"snapshot:{camera}:2", b"\xff\xd8tiny\xff\xd9", ex=60)
    producer = make_producer(stack.kafka, settings.kafka)
    await producer.start()
    try:
        for event in (old, fall, quiet, scene_event(other, 1, now, people=1, falls=1)):
            await producer.send_and_wait(
                DETECTION_TOPIC, event.model_dump_json().encode(), key=event.camera_id.encode()
            )
        await producer.send_and_wait(DETECTION_TOPIC, b"{not json", key=camera.encode())
    finally:
        await producer.stop()
    out = tmp_path / "week.jsonl"
    await _cli(settings, "replay", "record", "--camera", camera, "--since", "1h", "--out", str(out))
    [recorded] = load_events(out)
    assert recorded.event.frame_id == 2 and recorded.situation == "fall"
    assert recorded.snapshot_b64 is not None
    assert base64.b64decode(recorded.snapshot_b64) == b"\xff\xd8tiny\xff\xd9"
    (tmp_path / "c.yaml").write_text("candidates:\n  - {name: current}\n")
    await _cli(
        settings,
        "replay",
        "run",
        str(out),
        "--candidates",
        str(tmp_path / "c.yaml"),
        "--out",
        str(tmp_path / "report"),
    )
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["rows"][0]["levels"]["current"]["level"] == "high"
    assert [r["endpoint"] for r in await dashscope_admin.requests()] == ["vision"]


def test_unreadable_or_empty_event_files_are_named_not_raised(tmp_path: Path) -> None:
    binary = tmp_path / "noise.jsonl"
    binary.write_bytes(bytes(range(128, 256)) * 20)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    cases = {binary: "not a readable", tmp_path: "not a readable", empty: "no events"}
    for path, why in cases.items():
        with pytest.raises(ConfigError, match=why):
            load_events(path)
