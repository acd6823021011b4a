"""Key pool throughput and correctness as the provider sees it.

Several worker processes, each with many concurrent callers, run the real LLM path against
the local DashScope server: lease a key (Redis key pool), claim the send slot, call through
the dashscope SDK, release. The server counts every request per key and per quota group in
sliding 1 s and 60 s windows and answers 429 to any request over a limit (a violation).

Same run, same keys and limits: LiteLLM Router with usage-based routing on its Redis
(bench/litellm_router.py) as the anchor, on the server's OpenAI-compatible route; and the
baseline: a per-process limiter (each process keeps its own sliding windows, as routers that
count per instance do), which is what riskflow replaces.

    python bench/key_pool.py [--processes 3] [--callers 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from collections import defaultdict, deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, cast

import aiohttp
import yaml

from activities.keypool import KeyPool
from activities.providers.dashscope import DashScopeClient
from activities.providers.errors import retry_after_seconds
from activities.providers.route import compatible_mode_url
from bench import litellm_router
from bench._stack import bench_settings, report, services
from riskflow.config.keys import KeyRing, KeysConfig
from riskflow.infra.redis import redis_client

KEYS = {
    "api_keys": [
        {"key_id": "a", "key": "sk-bench-a", "qps_limit": 10, "rpm_limit": 1200},
        {"key_id": "b", "key": "sk-bench-b", "qps_limit": 5, "rpm_limit": 600},
        {
            "key_id": "c",
            "key": "sk-bench-c",
            "qps_limit": 8,
            "rpm_limit": 1200,
            "quota_group": "acct",
        },
        {
            "key_id": "d",
            "key": "sk-bench-d",
            "qps_limit": 8,
            "rpm_limit": 1200,
            "quota_group": "acct",
        },
    ],
    "quota_groups": {"acct": {"qps_limit": 9, "rpm_limit": 1200}},
    "scheduler": {"lease_ttl_seconds": 30},  # the default window guard
}
# time for every process to start and import before the common start (litellm: seconds more)
SPAWN_SECONDS = {"pool": 8.0, "local": 8.0, "litellm": 30.0}
MESSAGES = [{"role": "user", "content": 'Detections (JSON): {"Normal": 1}\nRespond in JSON.'}]


def keys_of(args: argparse.Namespace) -> dict[str, Any]:
    """The bench's keys, with the scheduler options given on the command line."""
    scheduler = dict(cast(dict[str, Any], KEYS["scheduler"]))
    if args.window_guard_ms is not None:
        scheduler["window_guard_ms"] = args.window_guard_ms
    if args.pacing_margin is not None:
        scheduler["pacing_margin"] = args.pacing_margin
    return {**KEYS, "scheduler": scheduler}


def theoretical_max(config: KeysConfig, guard_ms: float = 0.0) -> float:
    """Calls/s the limits allow when sustained: per key min(qps, rpm/60), groups capped. With
    `guard_ms`, each window counted as that much longer (the pool's safety margin)."""

    def rate(qps: int, rpm: int) -> float:
        return min(qps * 1000 / (1000 + guard_ms), rpm * 1000 / (60_000 + guard_ms))

    keys = config.api_keys
    free = sum(rate(k.qps_limit, k.rpm_limit) for k in keys if not k.quota_group)
    for name, group in config.quota_groups.items():
        members = sum(rate(k.qps_limit, k.rpm_limit) for k in keys if k.quota_group == name)
        free += min(members, rate(group.qps_limit, group.rpm_limit))
    return free


async def _pooled_caller(
    pool: KeyPool, client: DashScopeClient, ring: KeyRing, until: float, sent: list[float]
) -> None:
    while time.monotonic() < until:
        result = await pool.acquire()
        if result.lease is None:
            await asyncio.sleep(
                max(0.001, min(result.retry_after_seconds, until - time.monotonic()))
            )
            continue
        lease = result.lease
        stamp = await pool.stamp(lease.lease_id)
        for _ in range(1000):  # wait out the few ms until the send slot opens
            if stamp.granted or stamp.gone:
                break
            await asyncio.sleep(stamp.wait_ms / 1000)
            stamp = await pool.stamp(lease.lease_id)
        if not stamp.granted:
            await pool.release(lease.lease_id, "unused")
            continue
        await asyncio.sleep(stamp.wait_ms / 1000)  # the booked, paced send slot
        sent.append(time.time())
        response = await client.generate(
            model="qwen-plus", messages=MESSAGES, api_key=ring.secret(lease.key_id), vision=False
        )
        if response.status_code == 429:  # as the LLM activity does: the provider's Retry-After
            wait = retry_after_seconds(response.headers, 600.0)
            await pool.release(lease.lease_id, "rate_limited", retry_after_seconds=wait)
        else:
            await pool.release(lease.lease_id, "ok" if response.status_code == 200 else "error")


class LocalWindows:
    """The baseline: one process's own view of each key's sliding windows."""

    def __init__(self, config: KeysConfig) -> None:
        self.config = config
        self.calls: dict[str, deque[float]] = defaultdict(deque)
        self.turn = 0

    def take(self) -> str | None:
        now = time.monotonic()
        keys = self.config.api_keys
        for i in range(len(keys)):
            key = keys[(self.turn + i) % len(keys)]
            window = self.calls[key.key_id]
            while window and window[0] <= now - 60:
                window.popleft()
            in_second = sum(1 for t in window if t > now - 1)
            if in_second < key.qps_limit and len(window) < key.rpm_limit:
                window.append(now)
                self.turn += i + 1
                return key.key_id
        return None


async def _local_caller(
    windows: LocalWindows, client: DashScopeClient, ring: KeyRing, until: float, sent: list[float]
) -> None:
    while time.monotonic() < until:
        key_id = windows.take()
        if key_id is None:
            await asyncio.sleep(0.005)
            continue
        sent.append(time.time())
        await client.generate(
            model="qwen-plus", messages=MESSAGES, api_key=ring.secret(key_id), vision=False
        )


async def _process(
    mode: str,
    redis_url: str,
    base_url: str,
    callers: int,
    start_at: float,
    seconds: float,
    keys: dict[str, Any],
) -> list[float]:
    config = KeysConfig.model_validate(keys)
    ring = KeyRing.from_config(config, {})
    redis = redis_client(redis_url)
    await redis.ping()
    sent: list[float] = []
    route = None
    if mode == "litellm":
        route = litellm_router.router(config, ring, compatible_mode_url(base_url), redis_url)
    # Every process starts calling at the same wall-clock moment, once all are spawned and
    # imported: the figures are the steady state, not 3 interpreters starting on 2 cores.
    await asyncio.sleep(max(0.0, start_at - time.time()))
    until = time.monotonic() + seconds
    async with aiohttp.ClientSession(trust_env=False) as session:
        client = DashScopeClient(base_url, session, 30)
        if route is not None:
            jobs = [litellm_router.caller(route, MESSAGES, until, sent) for _ in range(callers)]
        elif mode == "pool":
            pool = KeyPool(redis, config.scheduler)
            jobs = [_pooled_caller(pool, client, ring, until, sent) for _ in range(callers)]
        else:
            windows = LocalWindows(config)
            jobs = [_local_caller(windows, client, ring, until, sent) for _ in range(callers)]
        await asyncio.gather(*jobs)
    await redis.aclose()
    return sent


def run_process(
    mode: str,
    redis_url: str,
    base_url: str,
    callers: int,
    start_at: float,
    seconds: float,
    keys: dict[str, Any],
) -> list[float]:
    return asyncio.run(_process(mode, redis_url, base_url, callers, start_at, seconds, keys))


async def _reset(base: str) -> dict[str, object]:
    async with aiohttp.ClientSession(trust_env=False) as session:
        async with session.get(f"{base}/admin/stats") as response:
            stats: dict[str, object] = await response.json()
        async with session.post(f"{base}/admin/reset"):
            pass
    return stats


async def scenario(
    mode: str, args: argparse.Namespace, redis_url: str, base_url: str, config: KeysConfig
) -> dict[str, object]:
    redis = redis_client(redis_url)
    await redis.flushdb()
    await KeyPool(redis, config.scheduler).sync(config)
    await redis.aclose()
    admin = base_url.removesuffix("/api/v1")
    await _reset(admin)
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + SPAWN_SECONDS[mode]
    keys = keys_of(args)
    run = (mode, redis_url, base_url, args.callers, start_at, args.seconds, keys)
    with ProcessPoolExecutor(args.processes, mp_context=ctx) as executor:
        futures = [
            asyncio.wrap_future(executor.submit(run_process, *run)) for _ in range(args.processes)
        ]
        sent = sorted(t for result in await asyncio.gather(*futures) for t in result)
    stats = await _reset(admin)
    # Steady state: skip the first 2 s, count whole seconds after it.
    start, span = start_at + 2.0, int(args.seconds - 3)
    achieved = sum(1 for t in sent if start <= t < start + span) / span
    maximum = theoretical_max(config)
    requests = {k: v["requests"] for k, v in stats["keys"].items()}  # type: ignore[attr-defined]
    violations = cast(int, stats["violations"])
    # What the provider answered (not with a 429) per second over the whole run: sends over a
    # limit count in calls/s above, and the provider refuses them.
    answered = cast(dict[str, int], stats["outcomes"])
    accepted = sum(answered.values()) / args.seconds
    return {
        "calls": len(sent),
        "calls_per_s": round(achieved, 3),
        "fraction_of_max": round(achieved / maximum, 4),
        "accepted_per_s": round(accepted, 3),
        "accepted_fraction_of_max": round(accepted / maximum, 4),
        "violations": violations,
        "server_requests": requests,
    }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config_dir = Path(tmp) / "config"
        config_dir.mkdir()
        (config_dir / "api_keys.yaml").write_text(yaml.safe_dump(keys_of(args)))
        settings = bench_settings(Path(tmp) / "state", config_dir)
        config = settings.keys
        async with services(settings, {"redis", "dashscope"}) as endpoints:
            if args.only:  # an experiment: one scenario, printed, no report
                one = await scenario(args.only, args, endpoints.redis, endpoints.dashscope, config)
                print(args.only, one)
                return
            pooled = await scenario("pool", args, endpoints.redis, endpoints.dashscope, config)
            litellm = await scenario("litellm", args, endpoints.redis, endpoints.dashscope, config)
            naive = await scenario("local", args, endpoints.redis, endpoints.dashscope, config)
    maximum = theoretical_max(config)
    guarded = theoretical_max(config, config.scheduler.window_guard_ms)
    pooled_rate = cast(float, pooled["calls_per_s"])
    report(
        "key_pool",
        {
            "processes": args.processes,
            "callers_per_process": args.callers,
            "seconds": args.seconds,
            "theoretical_max_calls_per_s": maximum,
            "riskflow_pool": pooled,
            "litellm_router_usage_based": litellm,
            "baseline_per_process_limiter": naive,
            "ratio_vs_max": pooled["fraction_of_max"],
            # What the pool's own safety margin leaves of the limits, and the share of it used.
            "guarded_max_calls_per_s": round(guarded, 3),
            "ratio_vs_guarded_max": round(pooled_rate / guarded, 4),
            "target": {"ratio_vs_max": 0.97, "violations": 0},
            "met": cast(float, pooled["fraction_of_max"]) >= 0.97 and pooled["violations"] == 0,
        },
    )
    print(f"{'':28} {'calls/s':>8} {'of max':>7} {'violations':>10} {'accepted/s':>10}")
    rows = (
        ("riskflow key pool", pooled),
        ("LiteLLM Router (usage, Redis)", litellm),
        ("per-process limiter", naive),
    )
    for label, row in rows:
        rate, share, bad = row["calls_per_s"], row["fraction_of_max"], row["violations"]
        print(f"{label:28} {rate:>8} {share:>7} {bad:>10} {row['accepted_per_s']:>10}")
    print(f"{'theoretical maximum':28} {maximum:>8}")
    window_guard = f"with the {config.scheduler.window_guard_ms} ms guard"
    print(f"{window_guard:28} {round(guarded, 3):>8}  (pool uses {pooled_rate / guarded:.3f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--window-guard-ms", type=int, default=None, help="scheduler override")
    parser.add_argument("--pacing-margin", type=float, default=None, help="scheduler override")
    parser.add_argument(
        "--only", choices=["pool", "litellm", "local"], default=None, help="one scenario"
    )
    asyncio.run(main(parser.parse_args()))
