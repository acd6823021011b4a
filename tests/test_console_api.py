"""The console's JSON API and pages on a real Redis: logins, roles, CSRF, filters and
pagination, snapshots, secrets, bad input (4xx, never 5xx)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from redis.asyncio import Redis

from activities.keypool import KeyPool
from riskflow.config.loader import load_settings
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment, Provenance
from riskflow.errors import ConfigError
from riskflow.infra.endpoints import Endpoints
from riskflow.levels import RiskLevel
from riskflow.names import camera_alerts_key, camera_latest_key
from tests.console_server import (
    OPERATOR_TOKEN,
    PASSWORD,
    VIEWER_TOKEN,
    RunningConsole,
    console_settings,
    running_console,
)

CAMERAS = ["cam-a", "cam-b", "cam-c"]


@pytest.fixture(scope="module")
def served(settings: Settings, stack: Endpoints) -> Iterator[RunningConsole]:
    with running_console(console_settings(settings, CAMERAS, login_attempts=3)) as running:
        yield running


@pytest.fixture
async def http(served: RunningConsole) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, follow_redirects=False) as client:
        yield client


def assessment(camera: str, level: RiskLevel, minutes_ago: float, **extra: object) -> Assessment:
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return Assessment(
        assessment_id=f"risk-{camera}-{level}-{minutes_ago}",
        camera_id=camera,
        situation="fall",
        status="assessed",
        captured_at=at,
        captured_ms=int(at.timestamp() * 1000),
        assessed_at=at,
        frame_id=1,
        risk_level=level,
        risk_score=level.rank * 20,
        summary=f"{camera} {level}",
        key_id="key_1",
        **extra,  # type: ignore[arg-type]
    )


async def login(http: httpx.AsyncClient, user: str, password: str = PASSWORD) -> httpx.Response:
    page = await http.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    return await http.post(
        "/login",
        data={"username": user, "password": password, "csrf_token": csrf.group(1), "next": "/"},
    )


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


async def test_logged_out_requests_are_refused_except_health(http: httpx.AsyncClient) -> None:
    for path in (
        "/api/cameras",
        "/api/cameras/cam-a/latest",
        "/api/cameras/cam-a/snapshot",
        "/api/alerts",
        "/api/keypool",
        "/api/events",
        "/api/openapi.json",
    ):
        assert (await http.get(path)).status_code == 401, path
    for page in ("/", "/alerts", "/keys", "/incidents"):
        response = await http.get(page)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    action = await http.post("/api/incidents/x/actions/acknowledge")
    assert action.status_code == 401
    health = await http.get("/api/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "redis": True}


async def test_login_needs_the_csrf_token_and_the_right_password(http: httpx.AsyncClient) -> None:
    await http.get("/login")
    no_csrf = await http.post("/login", data={"username": "op", "password": PASSWORD})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    wrong = await login(http, "op", "nope")
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    unknown = await login(http, "nobody", PASSWORD)
    assert unknown.status_code == 401
    ok = await login(http, "op")
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert (await http.get("/api/cameras")).status_code == 200


async def test_a_rejected_login_never_echoes_the_password(http: httpx.AsyncClient) -> None:
    secret = "s3cret-" + "x" * 1100  # over the form's limit: a 422, not a login attempt
    refused = await login(http, "op", secret)
    assert refused.status_code == 422 and "password" in refused.text
    assert "s3cret-" not in refused.text


async def test_failed_logins_are_throttled_per_user(http: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await login(http, "boss", "wrong")).status_code == 401
    throttled = await login(http, "boss")  # even the right password, until the minute is over
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert (await login(http, "viewer")).status_code == 303  # other users are not affected


async def test_cameras_paged_and_filtered_with_latest_and_alerts(
    http: httpx.AsyncClient, redis: Redis
) -> None:
    high = assessment("cam-a", RiskLevel.HIGH, 1)
    low = assessment("cam-b", RiskLevel.LOW, 2)
    await redis.set(camera_latest_key("cam-a"), high.model_dump_json())
    await redis.set(camera_latest_key("cam-b"), low.model_dump_json())
    older = assessment("cam-a", RiskLevel.CRITICAL, 30)
    await redis.rpush(camera_alerts_key("cam-a"), high.model_dump_json(), older.model_dump_json())
    await redis.rpush(camera_alerts_key("cam-b"), "not json")  # shown as missing, not a 500
    await login(http, "viewer")

    # Only this site's cameras: the console also shows cameras other tests left in Redis.
    site = {"site": "plant-t"}
    page = (await http.get("/api/cameras", params={"limit": 2, **site})).json()
    assert [c["camera_id"] for c in page["items"]] == ["cam-a", "cam-b"] and page["total"] == 3
    assert page["items"][0]["site_id"] == "plant-t" and page["items"][0]["open_incidents"] == 0
    rest = (await http.get("/api/cameras", params={"offset": 2, **site})).json()
    assert [c["camera_id"] for c in rest["items"]] == ["cam-c"] and rest["items"][0][
        "latest"
    ] is None
    at_least = (await http.get("/api/cameras", params={"min_level": "medium", **site})).json()
    assert [c["camera_id"] for c in at_least["items"]] == ["cam-a"]
    other_site = (await http.get("/api/cameras", params={"site": "elsewhere"})).json()
    assert other_site["items"] == [] and other_site["total"] == 0

    latest = (await http.get("/api/cameras/cam-a/latest")).json()
    assert latest["risk_level"] == "high" and latest["assessment_id"] == high.assessment_id
    assert (await http.get("/api/cameras/cam-c/latest")).status_code == 404

    alerts = (await http.get("/api/alerts", params=site)).json()
    assert [a["risk_level"] for a in alerts["items"]] == ["high", "critical"]
    critical = (await http.get("/api/alerts", params={"min_level": "critical", **site})).json()
    assert [a["assessment_id"] for a in critical["items"]] == [older.assessment_id]
    second = (await http.get("/api/alerts", params={"limit": 1, "offset": 1, **site})).json()
    assert second["total"] == 2 and len(second["items"]) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/api/cameras?limit=0",
        "/api/cameras?limit=100000",
        "/api/cameras?offset=-1",
        "/api/cameras?min_level=apocalyptic",
        "/api/cameras?site=%7Bx%7D",
        "/api/alerts?camera=a%2Fb",
        "/api/cameras/%7Bbad%7D/latest",
        "/api/cameras/" + "x" * 65,
    ],
)
async def test_bad_input_gets_a_clear_4xx(http: httpx.AsyncClient, path: str) -> None:
    await login(http, "viewer")
    response = await http.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"]  # names the parameter


async def test_roles_and_csrf_guard_the_incident_actions(http: httpx.AsyncClient) -> None:
    action = "/api/incidents/inc-1/actions/acknowledge"
    viewer = await http.post(action, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    assert viewer.status_code == 403 and "operator" in viewer.json()["detail"]
    operator = await http.post(action, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert operator.status_code == 404  # allowed; no such incident
    bad_action = await http.post(
        "/api/incidents/inc-1/actions/explode",
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert bad_action.status_code == 422
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    for eta in (0, 241, "soon"):
        wrong_eta = await http.post(action, headers=auth, json={"eta_minutes": eta})
        assert wrong_eta.status_code == 422, eta

    await login(http, "op")
    page = await http.get("/")
    assert (await http.post(action)).status_code == 403  # a session without the CSRF token
    wrong = await http.post(action, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    with_csrf = await http.post(action, headers={"X-CSRF-Token": csrf_of(page)})
    assert with_csrf.status_code == 404
    bad_token = await http.get("/api/cameras", headers={"Authorization": "Bearer wrong"})
    assert bad_token.status_code == 401  # a wrong token is not rescued by the session cookie


async def test_snapshots_only_of_the_cameras_own_key(http: httpx.AsyncClient, redis: Redis) -> None:
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg"
    await redis.set("snapshot:cam-a:1:1", jpeg)
    await redis.set("snapshot:cam-b:1:1", b"\xff\xd8other")
    own = assessment(
        "cam-a", RiskLevel.HIGH, 1, provenance=Provenance(image_ref="redis:snapshot:cam-a:1:1")
    )
    # An image_ref naming another camera's snapshot, or any other Redis key, is never served.
    other = assessment(
        "cam-b", RiskLevel.HIGH, 1, provenance=Provenance(image_ref="redis:snapshot:cam-a:1:1")
    )
    url_ref = assessment(
        "cam-c", RiskLevel.HIGH, 1, provenance=Provenance(image_ref="url:http://x/y.jpg")
    )
    for a in (own, other, url_ref):
        await redis.set(camera_latest_key(a.camera_id), a.model_dump_json())
    await login(http, "viewer")
    served = await http.get("/api/cameras/cam-a/snapshot")
    assert served.status_code == 200 and served.content == jpeg
    assert served.headers["content-type"] == "image/jpeg"
    assert (await http.get("/api/cameras/cam-b/snapshot")).status_code == 404
    assert (await http.get("/api/cameras/cam-c/snapshot")).status_code == 404
    await redis.delete("snapshot:cam-a:1:1")  # expired
    assert (await http.get("/api/cameras/cam-a/snapshot")).status_code == 404


async def test_no_secret_reaches_the_browser(
    http: httpx.AsyncClient, served: RunningConsole, redis: Redis
) -> None:
    settings = served.settings
    await KeyPool(redis, settings.keys.scheduler).sync(settings.keys)
    await login(http, "op")
    bodies = [
        (await http.get(path)).text
        for path in ("/", "/keys", "/alerts", "/incidents", "/api/keypool", "/api/cameras")
    ]
    pool = (await http.get("/api/keypool")).json()
    assert {k["key_id"] for k in pool["keys"]} == {k.key_id for k in settings.keys.api_keys}
    secrets = [k.key.get_secret_value() for k in settings.keys.api_keys if k.key]
    assert secrets
    for body in bodies:
        for secret in [*secrets, PASSWORD, served.settings.console.users[0].password_hash]:
            assert secret not in body


async def test_language_from_the_browser_then_the_switch(http: httpx.AsyncClient) -> None:
    await login(http, "viewer")
    chinese = await http.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert '<html lang="zh-CN">' in chinese.text and "摄像头" in chinese.text
    assert ">密钥池</a>" in chinese.text
    english = await http.get("/", headers={"Accept-Language": "fr;q=1, en;q=0.5"})
    assert '<html lang="en">' in english.text and ">Key pool</a>" in english.text
    switched = await http.post("/lang", data={"lang": "zh-CN", "csrf_token": csrf_of(english)})
    assert switched.status_code == 303 and "lang=zh-CN" in switched.headers["set-cookie"]
    remembered = await http.get("/", headers={"Accept-Language": "en"})
    assert '<html lang="zh-CN">' in remembered.text
    refused = await http.post("/lang", data={"lang": "xx", "csrf_token": csrf_of(english)})
    assert refused.status_code == 422 and "unknown language" in refused.text


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "javascript:x"])
async def test_login_never_redirects_off_site(http: httpx.AsyncClient, target: str) -> None:
    page = await http.get("/login", params={"next": target})
    assert target not in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    form = {"username": "viewer", "password": PASSWORD, "csrf_token": csrf.group(1)}
    response = await http.post("/login", data={**form, "next": target})
    assert response.status_code == 303 and response.headers["location"] == "/"


@pytest.mark.parametrize(
    ("user", "field"),
    [
        ({"username": "a", "password_hash": "plain-text"}, "password_hash"),  # not a hash
        ({"username": "a b", "password_hash": "$argon2id$v=19$x"}, "username"),
        ({"username": "a", "password_hash": "$argon2id$v=19$x", "role": "root"}, "role"),
    ],
)
def test_bad_console_users_stop_the_start_with_the_file_and_field(
    tmp_path: Path, user: dict[str, str], field: str
) -> None:
    (tmp_path / "console.yaml").write_text(yaml.safe_dump({"console": {"users": [user]}}))
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    message = str(caught.value)
    assert "console.yaml" in message and f"console.users.0.{field}" in message, message


HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


async def test_llm_text_is_escaped_on_every_page(http: httpx.AsyncClient, redis: Redis) -> None:
    hostile = assessment("cam-a", RiskLevel.HIGH, 1).model_copy(update={"summary": HOSTILE})
    await redis.set(camera_latest_key("cam-a"), hostile.model_dump_json())
    await redis.lpush(camera_alerts_key("cam-a"), hostile.model_dump_json())
    await login(http, "viewer")
    for path in ("/", "/alerts", "/alerts?camera=cam-a"):
        body = (await http.get(path)).text
        assert "<script>alert" not in body and "<img src=x" not in body, path
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in body, path
    headers = (await http.get("/")).headers
    assert "script-src" not in headers["content-security-policy"]  # default-src 'self' only
    assert "default-src 'self'" in headers["content-security-policy"]
