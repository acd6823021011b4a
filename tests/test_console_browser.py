"""The console in real headless Chromium (Debian `chromium`, driven by Playwright with the
system executable) on the real local stack: a fall event produced to Kafka goes through the
real bridge and worker and turns its camera's tile red without a reload; a viewer sees no
action buttons and gets 403 from an action endpoint; a logged-out visitor is sent to the
login page. On the incident path (`bridge.mode: incidents`) the fall opens an incident that
the list shows live; an operator acknowledges and resolves it on its page without a reload,
and the incident workflow's `incident` query agrees. Screenshots of the camera grid and of an
incident are written under the test's tmp dir (`RISKFLOW_UPDATE_SCREENSHOT=1` also refreshes
docs/console.png)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from temporalio.client import Client

from devstack.simulate import scene_event
from riskflow.config.bridge import BridgeSettings
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment
from riskflow.contracts.incidents import IncidentState, incident_workflow_id
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.kafka import make_producer
from riskflow.levels import RiskLevel
from riskflow.names import DETECTION_TOPIC, camera_latest_key
from tests.conftest import group_from_now, running_worker
from tests.console_server import PASSWORD, RunningConsole, console_settings, running_console
from tests.test_bridge_faults import bridge_on, new_topic, sender, tuned
from tests.test_incident_workflow import incident_worker
from workers.bridge.bridge import run_bridge
from workflows.incident import IncidentWorkflow

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "console.png"
UI_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[object]:
    if not HAVE_CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is missing (.ci/run installs Debian's chromium)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def _cameras(unique: str) -> list[str]:
    return [f"ui-{unique}-{i}" for i in range(6)]


@pytest.fixture
def served(settings: Settings, stack: Endpoints, unique: str) -> Iterator[RunningConsole]:
    with running_console(console_settings(settings, _cameras(unique))) as running:
        yield running


async def _login(browser: object, url: str, user: str) -> object:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page.set_default_timeout(UI_TIMEOUT_MS)
    await page.goto(url + "/")
    assert "/login" in page.url  # logged out: sent to the login page
    await page.fill("#username", user)
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(url + "/")
    await page.wait_for_selector("body[data-live='yes']")  # the event stream is open
    return page


LEVELS = ["none", "low", "medium", "critical"]
# LLM-written text is untrusted: it must show as text, never run.
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def _assessment(camera: str, level: str) -> Assessment:
    now = datetime.now(UTC)
    return Assessment(
        assessment_id=f"seed-{camera}",
        camera_id=camera,
        situation="seed",
        status="assessed",
        captured_at=now,
        captured_ms=int(now.timestamp() * 1000),
        assessed_at=now,
        frame_id=1,
        risk_level=RiskLevel(level),
        risk_score=RiskLevel(level).rank * 20,
        summary=f"a scene at level {level}" + (f" {HOSTILE}" if level == LEVELS[0] else ""),
    )


async def test_a_fall_on_kafka_turns_the_tile_red_without_reload(
    redis: Redis,
    browser: object,
    served: RunningConsole,
    settings: Settings,
    stack: Endpoints,
    client: Client,
    task_queue: str,
    unique: str,
    tmp_path: Path,
) -> None:
    camera = _cameras(unique)[2]
    page = await _login(browser, served.url, "op")
    tile = page.locator(f"#tile-{camera}")  # type: ignore[attr-defined]
    assert await tile.get_attribute("data-level") == "unknown"
    await page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    # Neighbours at other levels (written as aggregation writes them), drawn live too.
    others = dict(zip([c for c in _cameras(unique) if c != camera], LEVELS, strict=False))
    for other, level in others.items():
        await redis.set(camera_latest_key(other), _assessment(other, level).model_dump_json())
    for other, level in others.items():
        await page.wait_for_selector(f"#tile-{other}[data-level='{level}']")
    first = page.locator(f"#tile-{next(iter(others))} .summary")
    assert HOSTILE in await first.inner_text()
    assert await page.evaluate("window.__pwned") is None
    await page.screenshot(path=str(tmp_path / "cameras-before.png"), full_page=True)

    bridged = settings.model_copy(
        update={
            "bridge": BridgeSettings(group_id=f"ui-{unique}"),
            "temporal": settings.temporal.model_copy(update={"task_queue": task_queue}),
        }
    )
    await group_from_now(stack.kafka, settings.kafka, DETECTION_TOPIC, f"ui-{unique}")
    stop = asyncio.Event()
    producer = make_producer(stack.kafka, settings.kafka)
    await producer.start()
    try:
        async with running_worker(client, bridged, stack, task_queue):
            bridge = asyncio.create_task(run_bridge(bridged, stop))
            try:
                event = scene_event(camera, 1, datetime.now(UTC), people=2, falls=1)
                await producer.send_and_wait(
                    DETECTION_TOPIC, event.model_dump_json().encode(), key=camera.encode()
                )
                await page.wait_for_selector(f"#tile-{camera}[data-level='high']")
            finally:
                stop.set()
                await asyncio.wait_for(bridge, 30)
    finally:
        await producer.stop()

    assert await page.evaluate("window.__sameDocument") is True  # no reload happened
    assert await tile.locator(".word").inner_text() == "High"  # the word, not only a colour
    background = await tile.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(197, 34, 31)"  # red
    assert await page.locator(".tile[data-level='unknown']").count() == 1
    shot = tmp_path / "cameras.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    if os.environ.get("RISKFLOW_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    await page.close()


async def test_a_viewer_sees_no_action_buttons_and_is_refused_an_action(
    browser: object, served: RunningConsole
) -> None:
    page = await _login(browser, served.url, "viewer")
    assert await page.locator("[data-action], button.action").count() == 0  # type: ignore[attr-defined]
    status = await page.evaluate(  # type: ignore[attr-defined]
        """async () => {
            const csrf = document.querySelector('meta[name=csrf-token]').content;
            const r = await fetch('/api/incidents/inc-1/actions/acknowledge',
                                  {method: 'POST', headers: {'X-CSRF-Token': csrf}});
            return [r.status, (await r.json()).detail];
        }"""
    )
    assert status[0] == 403 and "viewer" in status[1]
    await page.click("button:has-text('Log out')")  # type: ignore[attr-defined]
    await page.wait_for_url(served.url + "/login")  # type: ignore[attr-defined]
    refused = await page.evaluate("async () => (await fetch('/api/cameras')).status")  # type: ignore[attr-defined]
    assert refused == 401
    await page.close()  # type: ignore[attr-defined]


async def test_an_operator_acknowledges_the_incident_of_a_fall_without_reload(
    browser: object,
    served: RunningConsole,
    stack: Endpoints,
    client: Client,
    task_queue: str,
    unique: str,
    tmp_path: Path,
) -> None:
    camera = _cameras(unique)[4]
    grid = await _login(browser, served.url, "op")
    listing = await _login(browser, served.url, "op")  # a second window: the incident list
    # Filtered by its camera: other tests of the session leave older open incidents of the
    # same severity, which the list (severity, then age) shows first, a page before this one.
    await listing.goto(served.url + f"/incidents?camera={camera}")  # type: ignore[attr-defined]
    await listing.wait_for_selector("body[data-live='yes']")
    await listing.evaluate("window.__sameDocument = true")
    # The bridge and the worker of the console's own settings: links point at this console.
    incidents = tuned(served.settings, task_queue, mode="incidents")
    topic = await new_topic(stack, incidents, f"ui-inc-{unique}")
    async with (
        incident_worker(client, incidents, stack, task_queue) as sent,
        sender(stack, incidents) as producer,
        bridge_on(topic, incidents, client, stack, f"ui-inc-{unique}"),
    ):
        event = scene_event(camera, 1, datetime.now(UTC), people=2, falls=1)
        await producer.send_and_wait(topic, event.model_dump_json().encode(), key=camera.encode())
        await grid.wait_for_selector(f"#tile-{camera}[data-level='high']")  # type: ignore[attr-defined]
        await grid.wait_for_selector(f"#tile-{camera} .badge[data-count='1']:visible")  # type: ignore[attr-defined]
        await grid.screenshot(path=str(tmp_path / "cameras.png"), full_page=True)  # type: ignore[attr-defined]
        row = listing.locator(f"tr.incident:has-text('{camera}')")
        await row.wait_for()
        assert await listing.evaluate("window.__sameDocument") is True  # the list came live
        handle = client.get_workflow_handle(incident_workflow_id(camera, "hazard"))
        view = await handle.query(IncidentWorkflow.incident)
        assert view is not None and await row.get_attribute("data-incident") == view.incident_id

        page = listing
        await row.locator("a").click()
        await page.wait_for_url(f"**/incidents/{view.incident_id}")
        await page.wait_for_selector("body[data-live='yes']")
        await page.evaluate("window.__sameDocument = true")
        await page.select_option("#action-eta", "10")  # on my way, there in 10 minutes
        await page.click("button.action[data-action='acknowledge']")
        await page.wait_for_selector("#incident-state[data-state='acknowledged']")
        acked = await handle.query(IncidentWorkflow.incident)
        assert acked is not None and acked.state == IncidentState.ACKNOWLEDGED
        assert acked.acknowledged_by == "op"
        assert acked.follow_up_at is not None and acked.acknowledged_at is not None
        assert acked.follow_up_at - acked.acknowledged_at == timedelta(minutes=10)
        await page.wait_for_selector("#incident-follow-up[datetime]")
        await page.wait_for_selector("#incident-timeline tr[data-kind='acknowledged']")
        await page.screenshot(path=str(tmp_path / "incident.png"), full_page=True)

        await page.fill("#action-text", "cleared by the shift")
        await page.click("button.action[data-action='resolve']")
        await page.wait_for_selector("#incident-state[data-state='resolved']")
        await page.click("button.action[data-action='acknowledge']")  # refused: it is resolved
        await page.wait_for_selector("#action-result[data-outcome='error']")
        assert "resolved" in await page.locator("#action-result").inner_text()
        assert await page.locator("#incident-state").get_attribute("data-state") == "resolved"
        assert await page.evaluate("window.__sameDocument") is True  # no reload throughout
        closed = await handle.query(IncidentWorkflow.incident)
        assert closed is not None and closed.state == IncidentState.RESOLVED

        link = f"{served.url}/incidents/{view.incident_id}"
        assert sent.requests and {r.console_url for r in sent.requests} == {link}
    viewer = await _login(browser, served.url, "viewer")
    await viewer.goto(link + "?action=ack")  # type: ignore[attr-defined]
    assert await viewer.locator("#incident-state").get_attribute("data-state") == "resolved"  # type: ignore[attr-defined]
    assert await viewer.locator("button.action, [data-action]").count() == 0  # type: ignore[attr-defined]
    for opened in (grid, listing, viewer):
        await opened.close()  # type: ignore[attr-defined]
