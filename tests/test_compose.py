"""docker-compose.temporal.yml and the Dockerfile, checked offline: the compose spec, hadolint,
every riskflow command exists, every RISKFLOW_ variable is a real setting."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from cli.app import app
from riskflow.config.loader import load_settings
from riskflow.config.settings import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.temporal.yml"
BIN = Path(sys.executable).parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def riskflow_services() -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in compose()["services"].items()
        if str(spec.get("image", "")).startswith("riskflow:")
    }


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        assert found, f"{name} is part of the test extra"
        return found
    return str(path)


def test_compose_file_follows_the_compose_spec() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stack_has_every_production_part() -> None:
    services = compose()["services"]
    assert {
        "temporal",
        "temporal-ui",
        "postgresql",
        "kafka",
        "kafka-ui",
        "redis",
        "prometheus",
        "grafana",
        "worker",
        "bridge",
        "edge",
        "topics-init",
    } <= services.keys()
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    for name, spec in services.items():
        image = str(spec["image"])
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image"
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["topics-init"]["restart"] == "no"


@pytest.mark.parametrize("service", sorted(riskflow_services()))
def test_each_riskflow_command_exists(service: str) -> None:
    command = riskflow_services()[service]["command"]
    result = CliRunner().invoke(app, ["--config-dir", str(REPO / "config"), *command, "--help"])
    assert result.exit_code == 0, result.output


def _is_setting(parts: list[str], model: type[BaseModel]) -> bool:
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    if len(parts) == 1:
        return True
    nested = field.annotation
    return (
        isinstance(nested, type)
        and issubclass(nested, BaseModel)
        and _is_setting(parts[1:], nested)
    )


def test_every_variable_set_is_a_known_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    text = COMPOSE.read_text()
    names = set(re.findall(r"\b(RISKFLOW_[A-Z0-9_]+):", text))
    assert len(names) >= 6
    for name in names:
        parts = name.removeprefix(ENV_PREFIX).lower().split("__")
        assert _is_setting(parts, Settings), f"{name} is not a riskflow setting"
    for service in riskflow_services().values():
        env = {k: str(v) for k, v in service["environment"].items()}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings(REPO / "deploy" / "config")
        assert settings.temporal_address == "temporal:7233"
        assert settings.kafka.idempotent_producer


def test_dockerfile_installs_as_the_readme_says() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    readme = (REPO / "README.md").read_text()
    installs = re.findall(r"RUN (pip install [^\n]+)", dockerfile)
    assert installs == ["pip install --no-cache-dir .", 'pip install --no-cache-dir ".[detect]"']
    for line in installs:
        assert line.replace(" --no-cache-dir", "") in readme, f"README lacks: {line}"
