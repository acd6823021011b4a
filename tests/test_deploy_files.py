"""Dashboard, alert rules and Prometheus config: parse, name only real series, pass promtool."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import riskflow.infra.metrics  # noqa: F401  (registers riskflow's series)
from riskflow.config.keys import KeysConfig
from workers.worker.keypool_metrics import KeyPoolCollector

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SERIES = re.compile(r"\b(riskflow_[a-z0-9_]+)")


def known_series() -> set[str]:
    names = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    for family in [*REGISTRY.collect(), *KeyPoolCollector(KeysConfig()).collect()]:
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, []))
    return names


def dashboard_exprs() -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "dashboards" / "riskflow.json").read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_dashboard_is_generated_from_its_source() -> None:
    source = DEPLOY / "grafana" / "build_dashboard.py"
    spec = importlib.util.spec_from_file_location("build_dashboard", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (DEPLOY / "grafana" / "dashboards" / "riskflow.json").read_text()
    assert current == module.render(), "regenerate: python deploy/grafana/build_dashboard.py"


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_series_named_exists(source: str) -> None:
    exprs = dashboard_exprs() if source == "dashboard" else rule_exprs()
    named = {m for expr in exprs for m in SERIES.findall(expr)}
    assert len(named) >= 5
    assert named <= known_series(), named - known_series()


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool not installed")
    return found


@pytest.mark.parametrize(
    "args", [["rules", "prometheus/rules.yml"], ["config", "prometheus/prometheus.yml"]]
)
def test_promtool_accepts(args: list[str]) -> None:
    result = subprocess.run(
        [promtool(), "check", args[0], str(DEPLOY / args[1])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
