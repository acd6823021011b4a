"""`riskflow demo --once` as a new user runs it: real local stack, worker, bridge, the YOLO edge
on the generated sample scene, on the incident path: each camera's fall is one incident,
assessed, notified and received by the local receiver; the first is acknowledged from its
WeCom app card (a click in the simulator); assessments reach Redis for each camera;
everything it started is stopped afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from devstack.localstack.process import free_port, port_is_free
from riskflow.config.services import LocalStackSettings
from riskflow.contracts.incidents import IncidentState, IncidentView
from riskflow.infra.endpoints import Endpoints
from riskflow.names import INCIDENT_INDEX, camera_alerts_key, camera_latest_key, incident_key
from tests.conftest import group_timeouts


@pytest.mark.timeout(400)
async def test_demo_once_opens_one_notified_incident_per_camera_and_cleans_up(
    stack: Endpoints, redis: Redis, tmp_path: Path
) -> None:
    ports = {
        name: free_port()
        for name in ("TEMPORAL", "TEMPORAL_UI", "KAFKA", "DASHSCOPE", "RECEIVER", "SMTP")
    }
    timeouts = group_timeouts(LocalStackSettings())
    console_port = free_port()
    env = {
        **os.environ,
        "RISKFLOW_LOCAL__STATE_DIR": str(tmp_path / "state"),
        **{f"RISKFLOW_LOCAL__{name}_PORT": str(port) for name, port in ports.items()},
        "RISKFLOW_REDIS_URL": stack.redis,  # configured: used, never started or stopped
        # The default broker's shortest group session (noida-db refuses under 6 s).
        "RISKFLOW_KAFKA__SESSION_TIMEOUT_MS": str(timeouts.session_timeout_ms),
        "RISKFLOW_KAFKA__HEARTBEAT_INTERVAL_MS": str(timeouts.heartbeat_interval_ms),
        "RISKFLOW_METRICS__ENABLED": "false",
        "RISKFLOW_CONSOLE__PORT": str(console_port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "--log-level",
        "WARNING",
        "demo",
        "--once",
        "--cameras",
        "2",
        "--duration",
        "300",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 360)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "Where to look" in text and "temporal workflow query" in text
    assert "/admin/notifications" in text and "--type incident" in text, text
    received = re.search(r"Notifications received \((\d+)\)", text)
    assert received is not None and int(received.group(1)) >= 2, text  # one L0 per camera
    notifications = text[received.end() : text.index("Where to look")]
    card = "incident acknowledged by wang.gong; everyone's card now says: 王工 on the way"
    assert card in text and "about 10 min" in text, text  # the shipped site speaks English
    # Redis was configured, not ours
    assert "stopped: temporal, receiver, dashscope, kafka" in text, text
    console_line = f"Console:          http://127.0.0.1:{console_port}/"
    assert console_line in text and "log in as demo / demo-password-change-me" in text, text
    assert "console not started" not in text, text
    ids = [i.decode() for i in await redis.zrange(INCIDENT_INDEX, 0, -1)]
    views = [
        IncidentView.model_validate_json(raw)
        for raw in await redis.mget([incident_key(i) for i in ids])
    ]
    for camera in ("cam1", "cam2"):
        incidents = [v for v in views if v.camera_id == camera]
        assert len(incidents) == 1, incidents  # a continuous scene is one incident
        incident = incidents[0]
        # cam1's was answered from its WeCom card (the demo's click); cam2's waits.
        answered = IncidentState.ACKNOWLEDGED if camera == "cam1" else IncidentState.NOTIFIED
        assert incident.state == answered and "L0" in incident.steps_sent
        assert incident.assessments >= 1
        assert f"camera {camera}" in notifications, notifications  # it arrived, was shown
        latest = json.loads(await redis.get(camera_latest_key(camera)))
        assert latest["status"] == "assessed" and latest["risk_level"] in ("high", "critical")
        assert await redis.llen(camera_alerts_key(camera)) >= 1
    assert all(port_is_free("127.0.0.1", port) for port in [*ports.values(), console_port])
    assert not list((tmp_path / "state" / "pids").glob("*.pid"))
