"""The console's OpenAPI document, tested with schemathesis against the running app on a real
Redis: generated requests (valid and not) never get a 5xx, and every response matches the
document (status codes, content types, bodies). Authenticated with an operator bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import schemathesis
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.generation.modes import GenerationMode
from temporalio.testing import ActivityEnvironment

from activities.incidents import IncidentActivities
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment
from riskflow.contracts.incidents import IncidentEvent, IncidentRecord, IncidentState, IncidentView
from riskflow.infra.endpoints import Endpoints
from riskflow.infra.redis import redis_client
from riskflow.levels import RiskLevel
from riskflow.names import camera_alerts_key, camera_latest_key
from tests.console_server import (
    OPERATOR_TOKEN,
    RunningConsole,
    console_settings,
    running_console,
)

AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture(scope="module")
async def seeded(stack: Endpoints) -> None:
    """A camera with a latest assessment, an alert and an open incident, so pages are not
    all empty."""
    now = datetime.now(UTC)
    seen = Assessment(
        assessment_id="risk-api-1",
        camera_id="api-1",
        situation="fall",
        status="assessed",
        captured_at=now,
        captured_ms=int(now.timestamp() * 1000),
        assessed_at=now,
        frame_id=1,
        risk_level=RiskLevel.HIGH,
        risk_score=80,
        summary="one down",
    )
    incident = IncidentView(
        incident_id="inc-api-1",
        workflow_id="incident-api-1-fall",
        camera_id="api-1",
        site_id="plant-t",
        family="fall",
        state=IncidentState.NOTIFIED,
        opened_at=now,
        updated_at=now,
        version=1,
    )
    event = IncidentEvent(
        event_id="inc-api-1:1",
        kind="opened",
        incident_id="inc-api-1",
        camera_id="api-1",
        site_id="plant-t",
        state=incident.state,
        severity=incident.severity,
        at=now,
    )
    redis = redis_client(stack.redis)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka)
    await producer.start()
    try:
        await redis.set(camera_latest_key("api-1"), seen.model_dump_json())
        await redis.lpush(camera_alerts_key("api-1"), seen.model_dump_json())
        record = IncidentActivities(redis, producer).record
        await ActivityEnvironment().run(record, IncidentRecord(view=incident, events=[event]))
    finally:
        await producer.stop()
        await redis.aclose()


@pytest.fixture(scope="module")
def served(settings: Settings, seeded: None) -> Iterator[RunningConsole]:
    with running_console(console_settings(settings, ["api-1", "api-2"])) as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(served: RunningConsole) -> schemathesis.BaseSchema:
    url = served.url + "/api/openapi.json"
    assert httpx.get(url).status_code == 401  # the document itself needs a login
    loaded = schemathesis.openapi.from_url(url, headers=AUTH)
    # The event stream never ends; tests/test_console_browser.py covers it.
    return loaded.exclude(path="/api/events")


def _check_operation(operation: Any, mode: GenerationMode, base_url: str) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=15,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, headers=AUTH)

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_matches_its_openapi_document(
    api_schema: schemathesis.BaseSchema, served: RunningConsole, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/api/cameras", "/api/alerts", "/api/keypool", "/api/health"} <= paths
    assert {
        "/api/incidents",
        "/api/incidents/{incident_id}",
        "/api/incidents/{incident_id}/actions/{action}",
    } <= paths
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not operation.definition.raw.get("parameters"):
            continue  # nothing to get wrong
        _check_operation(operation, mode, served.url)
