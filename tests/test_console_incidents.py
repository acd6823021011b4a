"""The console's incident pages and API on a real Redis, with views written by the incident
workflow's own record activity: open incidents sorted by severity then age, filters and
pages, the detail with its timeline and assessments, the tiles' badge, refused actions."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from temporalio.testing import ActivityEnvironment

from activities.incidents import IncidentActivities
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment
from riskflow.contracts.incidents import (
    IncidentEvent,
    IncidentRecord,
    IncidentState,
    IncidentView,
    TimelineEntry,
)
from riskflow.infra.endpoints import Endpoints
from riskflow.levels import RiskLevel
from riskflow.names import camera_alerts_key
from tests.console_server import (
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    RunningConsole,
    console_settings,
    running_console,
)

CAMERAS = ["ic-a", "ic-b"]
OPENED = datetime.now(UTC) - timedelta(hours=1)
HOSTILE = "<script>window.__pwned=1</script>"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


@pytest.fixture(scope="module")
def served(settings: Settings, stack: Endpoints) -> Iterator[RunningConsole]:
    with running_console(console_settings(settings, CAMERAS)) as running:
        yield running


@pytest.fixture
async def http(served: RunningConsole) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, follow_redirects=False) as client:
        yield client


@pytest.fixture
async def record(redis: Redis, stack: Endpoints) -> AsyncIterator[IncidentActivities]:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka)
    await producer.start()
    try:
        yield IncidentActivities(redis, producer)
    finally:
        await producer.stop()


def view(
    name: str, camera: str, severity: RiskLevel, minutes: int, state: IncidentState
) -> IncidentView:
    opened = OPENED + timedelta(minutes=minutes)
    return IncidentView(
        incident_id=name,
        workflow_id=f"incident-{camera}-fall",
        camera_id=camera,
        site_id="plant-t",
        family="fall",
        state=state,
        severity=severity,
        rule="fall",
        summary=f"{name} {HOSTILE}",
        hazards=["a person on the floor"],
        opened_at=opened,
        updated_at=opened,
        closed_at=opened + timedelta(minutes=1) if state.closed else None,
        timeline=[TimelineEntry(at=opened, kind="opened", actor="system", detail="fall: 1")],
        version=1,
    )


async def write(incidents: IncidentActivities, *views: IncidentView) -> None:
    env = ActivityEnvironment()
    for v in views:
        event = IncidentEvent(
            event_id=f"{v.incident_id}:{v.version}",
            kind="resolved" if v.state.closed else "opened",
            incident_id=v.incident_id,
            camera_id=v.camera_id,
            site_id=v.site_id,
            state=v.state,
            severity=v.severity,
            at=v.updated_at,
        )
        assert await env.run(incidents.record, IncidentRecord(view=v, events=[event]))


SEEDED = [
    view("inc-old-high", "ic-a", RiskLevel.HIGH, 0, IncidentState.NOTIFIED),
    view("inc-new-high", "ic-b", RiskLevel.HIGH, 10, IncidentState.ACKNOWLEDGED),
    view("inc-critical", "ic-b", RiskLevel.CRITICAL, 20, IncidentState.OPEN),
    view("inc-medium", "ic-a", RiskLevel.MEDIUM, 5, IncidentState.NOTIFIED),
    view("inc-done", "ic-a", RiskLevel.CRITICAL, 1, IncidentState.RESOLVED),
]


def ids(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text
    return [i["incident_id"] for i in page.json()["items"]]


async def test_open_incidents_by_severity_then_age_with_filters_and_pages(
    http: httpx.AsyncClient, record: IncidentActivities
) -> None:
    await write(record, *SEEDED)
    listed = await http.get("/api/incidents", headers=VIEWER)
    assert ids(listed) == ["inc-critical", "inc-old-high", "inc-new-high", "inc-medium"]
    assert listed.json()["total"] == 4
    second = await http.get("/api/incidents?offset=1&limit=2", headers=VIEWER)
    assert ids(second) == ["inc-old-high", "inc-new-high"] and second.json()["total"] == 4
    by_camera = await http.get("/api/incidents?camera=ic-a", headers=VIEWER)
    assert ids(by_camera) == ["inc-old-high", "inc-medium"]
    by_state = await http.get("/api/incidents?state=acknowledged", headers=VIEWER)
    assert ids(by_state) == ["inc-new-high"]
    closed = await http.get("/api/incidents?state=resolved&site=plant-t", headers=VIEWER)
    assert ids(closed) == ["inc-done"]
    assert ids(await http.get("/api/incidents?site=elsewhere", headers=VIEWER)) == []
    for bad in ("state=closed", "camera=a%20b", "limit=0", "offset=-1"):
        answer = await http.get(f"/api/incidents?{bad}", headers=VIEWER)
        assert answer.status_code == 422, bad
    tiles = (await http.get("/api/cameras?site=plant-t", headers=VIEWER)).json()["items"]
    assert {t["camera_id"]: t["open_incidents"] for t in tiles} == {"ic-a": 2, "ic-b": 2}


async def test_the_list_page_shows_the_open_incidents_as_text(
    http: httpx.AsyncClient, record: IncidentActivities
) -> None:
    await write(record, *SEEDED)
    page = await http.get("/incidents?camera=ic-b", headers=VIEWER)
    assert page.status_code == 200
    rows = re.findall(r'<tr class="incident" data-incident="([^"]+)"', page.text)
    assert rows == ["inc-critical", "inc-new-high"]
    assert HOSTILE not in page.text and "&lt;script&gt;" in page.text
    # A filter that does not fit is ignored, never an error page.
    assert (
        await http.get("/incidents?state=bogus&camera=%3Cx%3E", headers=VIEWER)
    ).status_code == 200


async def test_the_detail_has_timeline_and_assessments_and_refuses_what_the_state_forbids(
    http: httpx.AsyncClient, record: IncidentActivities, redis: Redis
) -> None:
    await write(record, *SEEDED)
    at = OPENED + timedelta(seconds=30)
    own = Assessment(
        assessment_id="inc-old-high-a1",
        camera_id="ic-a",
        situation="fall",
        status="assessed",
        captured_at=at,
        captured_ms=int(at.timestamp() * 1000),
        assessed_at=at,
        frame_id=1,
        risk_level=RiskLevel.HIGH,
        risk_score=80,
        summary="someone fell",
        hazards=["head injury"],
        recommended_actions=["send first aid"],
    )
    other = own.model_copy(update={"assessment_id": "inc-medium-a1", "summary": "not this one"})
    for a in (other, own):
        await redis.lpush(camera_alerts_key("ic-a"), a.model_dump_json())
    detail = await http.get("/api/incidents/inc-old-high", headers=VIEWER)
    assert detail.status_code == 200
    body = detail.json()
    assert body["incident"]["state"] == "notified"
    assert [e["kind"] for e in body["incident"]["timeline"]] == ["opened"]
    assert [a["assessment_id"] for a in body["assessments"]] == ["inc-old-high-a1"]
    assert body["assessments"][0]["recommended_actions"] == ["send first aid"]
    assert (await http.get("/api/incidents/nope", headers=VIEWER)).status_code == 404
    assert (await http.get("/incidents/nope", headers=VIEWER)).status_code == 404

    page = await http.get("/incidents/inc-old-high", headers=OPERATOR)
    assert "send first aid" in page.text and 'data-action="acknowledge"' in page.text
    viewer_page = await http.get("/incidents/inc-old-high", headers=VIEWER)
    assert "send first aid" in viewer_page.text and "data-action" not in viewer_page.text

    refused = await http.post("/api/incidents/inc-done/actions/acknowledge", headers=OPERATOR)
    assert refused.status_code == 409 and "resolved" in refused.json()["detail"]
    dismissed = await http.post("/api/incidents/inc-done/actions/false_alarm", headers=OPERATOR)
    assert dismissed.status_code == 409
    viewer = await http.post("/api/incidents/inc-old-high/actions/acknowledge", headers=VIEWER)
    assert viewer.status_code == 403
    too_long = await http.post(
        "/api/incidents/inc-old-high/actions/comment", headers=OPERATOR, json={"text": "x" * 2001}
    )
    assert too_long.status_code == 422
