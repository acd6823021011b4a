"""The operator console with 200 cameras and 1,000 open incidents, in headless Chromium
(Debian's `chromium`).

1. First render: from navigation to every tile drawn and the event stream open, median of
   `--loads` loads; the same for the incident list (its first page of 50, sorted from all
   open incidents); baseline: the login page (same app, same templates, no Redis reads) in the
   same browser. Also the server's time for the camera page's and incident page's HTML alone.
2. Live-update latency: an assessment aggregated (`activities.aggregate`, the worker's own
   Redis writes) until the browser has redrawn its tile (a MutationObserver stamps the
   moment, same machine clock; each write at a random phase of the console's poll);
   baseline: the same browser fetching the camera's latest
   assessment from the JSON API right after the same kind of write (request/response, no poll).

    python -m bench.console [--cameras 200] [--incidents 1000] [--updates 40] [--loads 5]

The incidents are written by the incident workflow's own record activity (its Redis script).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from playwright.async_api import Page, async_playwright
from temporalio.testing import ActivityEnvironment

from activities.aggregate import AggregateActivities
from activities.incidents import IncidentActivities
from bench._stack import bench_settings, report, services
from console.app import create_app
from console.auth import hash_password
from devstack.localstack.process import free_port
from riskflow.config.console import ConsoleUser, Role
from riskflow.config.settings import Settings
from riskflow.config.sites import SiteConfig
from riskflow.contracts.assessment import Assessment
from riskflow.contracts.incidents import IncidentEvent, IncidentRecord, IncidentState, IncidentView
from riskflow.infra.redis import redis_client
from riskflow.levels import RiskLevel

CONFIG = Path(__file__).resolve().parent.parent / "config"
PASSWORD = "bench-password"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LEVELS = list(RiskLevel)


class _NoTopic:
    """The results topic is not part of what the console reads; the benchmark skips it."""

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> object:
        return None


def assessment(camera: str, n: int, level: RiskLevel) -> Assessment:
    now = datetime.now(UTC)
    return Assessment(
        assessment_id=f"bench-{camera}-{n}-{time.time_ns()}",
        camera_id=camera,
        situation="fall",
        status="assessed",
        captured_at=now,
        captured_ms=int(now.timestamp() * 1000) + n,
        assessed_at=now,
        frame_id=n,
        risk_level=level,
        risk_score=level.rank * 20,
        summary=f"bench update {n}",
    )


def incident(camera: str, n: int) -> IncidentRecord:
    opened = datetime.now(UTC)
    view = IncidentView(
        incident_id=f"bench-inc-{n}",
        workflow_id=f"incident-{camera}-hazard-{n}",
        camera_id=camera,
        site_id=f"site-{int(camera.rsplit('-', 1)[1]) % 4}",
        family="hazard",
        state=IncidentState.NOTIFIED,
        severity=LEVELS[2 + n % 3],
        rule="fall",
        summary=f"bench incident {n}",
        opened_at=opened,
        updated_at=opened,
        version=1,
    )
    event = IncidentEvent(
        event_id=f"{view.incident_id}:1",
        kind="opened",
        incident_id=view.incident_id,
        camera_id=camera,
        site_id=view.site_id,
        state=view.state,
        severity=view.severity,
        at=opened,
    )
    return IncidentRecord(view=view, events=[event])


def _settings(base: Settings, cameras: list[str]) -> Settings:
    user = ConsoleUser(username="bench", password_hash=hash_password(PASSWORD), role=Role.VIEWER)
    console = base.console.model_copy(
        update={"port": free_port(), "users": [user], "poll_seconds": 0.5}
    )
    sites = [SiteConfig(id=f"site-{i}", name=f"Site {i}", cameras=cameras[i::4]) for i in range(4)]
    return base.model_copy(update={"console": console, "sites": sites})


def _serve(settings: Settings) -> uvicorn.Server:
    app = create_app(settings, "bench-secret-" + "x" * 32)
    server = uvicorn.Server(
        uvicorn.Config(app, port=settings.console.port, log_config=None, access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


async def _timed_load(page: Page, url: str, ready: str) -> float:
    started = time.perf_counter()
    await page.goto(url)
    await page.wait_for_function(ready)
    return time.perf_counter() - started


async def _first_render(
    page: Page, anonymous: Page, base: str, count: int, incidents: int, loads: int
) -> dict[str, float]:
    tiles = (
        "() => document.body.dataset.live === 'yes'"
        f" && document.querySelectorAll('.tile').length === {count}"
    )
    rows = (
        "() => document.body.dataset.live === 'yes'"
        f" && document.querySelectorAll('tr.incident').length === {min(incidents, 50)}"
    )
    login = "() => document.querySelector('#login-submit') !== null"
    shown = [await _timed_load(page, base + "/", tiles) for _ in range(loads)]
    listed = [await _timed_load(page, base + "/incidents", rows) for _ in range(loads)]
    bare = [await _timed_load(anonymous, base + "/login", login) for _ in range(loads)]
    return {
        "cameras_page_s": statistics.median(shown),
        "incidents_page_s": statistics.median(listed),
        "login_page_s": statistics.median(bare),
    }


async def _server_html(base: str, cookies: dict[str, str], loads: int, path: str = "/") -> float:
    async with httpx.AsyncClient(cookies=cookies) as http:
        times = []
        for _ in range(loads):
            started = time.perf_counter()
            response = await http.get(base + path)
            response.raise_for_status()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


WATCH = """() => { window.__drawn = {};
  new MutationObserver(ms => { for (const m of ms) {
      const id = m.target.dataset.assessment; if (id) window.__drawn[id] = Date.now(); } })
    .observe(document.body,
             {subtree: true, attributes: true, attributeFilter: ["data-assessment"]});
}"""


async def _live_latency(
    page: Page, acts: AggregateActivities, cameras: list[str], updates: int, poll_seconds: float
) -> dict[str, Any]:
    await page.evaluate(WATCH)
    env = ActivityEnvironment()
    live, fetched = [], []
    for n in range(updates):
        camera = cameras[n % len(cameras)]
        a = assessment(camera, n + 10, LEVELS[n % len(LEVELS)])
        await asyncio.sleep(random.uniform(0, poll_seconds))  # any phase of the poll
        sent_ms = time.time() * 1000
        await env.run(acts.aggregate, a)
        await page.wait_for_function(f"() => window.__drawn[{a.assessment_id!r}]")
        live.append((await page.evaluate(f"window.__drawn[{a.assessment_id!r}]")) - sent_ms)
        b = assessment(camera, n + 10_000, LEVELS[n % len(LEVELS)])
        sent_ms = time.time() * 1000
        await env.run(acts.aggregate, b)
        got = await page.evaluate(
            f"async () => {{ await fetch('/api/cameras/{camera}/latest'); return Date.now(); }}"
        )
        fetched.append(got - sent_ms)
        await page.wait_for_function(f"() => window.__drawn[{b.assessment_id!r}]")
    live.sort()
    return {
        "live_update_ms": {
            "p50": statistics.median(live),
            "p95": live[int(0.95 * (len(live) - 1))],
            "max": live[-1],
        },
        "fetch_after_write_ms_p50": statistics.median(fetched),
    }


async def run(cameras_n: int, incidents_n: int, updates: int, loads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        base_settings = bench_settings(Path(tmp), CONFIG)
        async with services(base_settings, {"redis"}) as endpoints:
            cameras = [f"bench-{i:03d}" for i in range(cameras_n)]
            settings = _settings(base_settings, cameras)
            redis = redis_client(endpoints.redis)
            acts = AggregateActivities(redis, _NoTopic(), settings.aggregate)
            env = ActivityEnvironment()
            for i, camera in enumerate(cameras):
                await env.run(acts.aggregate, assessment(camera, 1, LEVELS[i % len(LEVELS)]))
            records = IncidentActivities(redis, _NoTopic())  # type: ignore[arg-type]
            for n in range(incidents_n):
                await env.run(records.record, incident(cameras[n % len(cameras)], n))
            server = _serve(settings)
            url = f"http://127.0.0.1:{settings.console.port}"
            try:
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(
                        executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                    )
                    page = await browser.new_page()
                    page.set_default_timeout(60_000)
                    await page.goto(url + "/login")
                    await page.fill("#username", "bench")
                    await page.fill("#password", PASSWORD)
                    await page.click("#login-submit")
                    await page.wait_for_url(url + "/")
                    anonymous = await (await browser.new_context()).new_page()
                    render = await _first_render(
                        page, anonymous, url, cameras_n, incidents_n, loads
                    )
                    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
                    html_s = await _server_html(url, cookies, loads)
                    incidents_html_s = await _server_html(url, cookies, loads, "/incidents")
                    await page.goto(url + "/")
                    await page.wait_for_function("() => document.body.dataset.live === 'yes'")
                    latency = await _live_latency(
                        page, acts, cameras, updates, settings.console.poll_seconds
                    )
                    await browser.close()
            finally:
                server.should_exit = True
                await redis.aclose()
    poll_ms = settings.console.poll_seconds * 1000
    return {
        "cameras": cameras_n,
        "open_incidents": incidents_n,
        "first_render_s": render["cameras_page_s"],
        "incidents_first_render_s": render["incidents_page_s"],
        "incidents_page_html_s": incidents_html_s,
        "baseline_login_page_s": render["login_page_s"],
        "ratio_first_render_vs_login_page": render["cameras_page_s"] / render["login_page_s"],
        "camera_page_html_s": html_s,
        **latency,
        "poll_ms": poll_ms,
        "ratio_live_update_vs_fetch": latency["live_update_ms"]["p50"]
        / max(latency["fetch_after_write_ms_p50"], 1.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=200)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    report("console", asyncio.run(run(args.cameras, args.incidents, args.updates, args.loads)))


if __name__ == "__main__":
    main()
