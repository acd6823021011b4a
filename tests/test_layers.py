"""The import contracts (pyproject's [tool.importlinter]) hold, and they would catch a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "riskflow",
    "activities",
    "workflows",
    "workers",
    "detection_edge",
    "console",
    "cli",
    "devstack",
)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "200"}  # one line per contract
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tree


def _contract(contract_id: str) -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    found: dict[str, object] = next(c for c in config["contracts"] if c["id"] == contract_id)
    return found


def _layer_names(layers: object) -> set[str]:
    assert isinstance(layers, list)
    return {name.strip() for layer in layers for name in str(layer).split("|")}


def test_every_package_is_a_layer() -> None:
    """A new top-level package, a new room of the kernel or a new base module is placed."""
    assert _layer_names(_contract("layers")["layers"]) == set(PACKAGES)
    rooms = {p.parent.name for p in (ROOT / "riskflow").glob("*/__init__.py")}
    assert _layer_names(_contract("kernel-rooms")["layers"]) == rooms
    base = {f"riskflow.{p.stem}" for p in (ROOT / "riskflow").glob("*.py") if p.stem != "__init__"}
    source_modules = _contract("kernel-base")["source_modules"]
    assert isinstance(source_modules, list)
    assert base == set(source_modules)


def test_the_tree_keeps_its_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


LAYERS = "Entry points > dev tooling"
ROOMS = "Inside the kernel"
BASE = "base modules import none"
DEVSTACK = "Dev tooling is imported only"
PURE = "Workflows import no I/O"
VISION = "Only the detection edge"


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # the floors, top to bottom
        ("riskflow/contracts/events.py", "import workers.bridge.bridge", LAYERS),
        ("riskflow/names.py", "from activities import keypool", LAYERS),
        ("riskflow/llm_text/prompt.py", "from devstack import simulate", LAYERS),
        ("riskflow/config/settings.py", "import console.auth", LAYERS),
        ("riskflow/infra/kafka.py", "import cli.app", LAYERS),
        ("activities/task.py", "import workflows.assessment", LAYERS),
        ("workflows/incident_plan.py", "import workers.common.client", LAYERS),
        ("workers/bridge/bridge.py", "import cli.app", LAYERS),
        ("workers/bridge/bridge.py", "import console.app", LAYERS),
        ("console/api.py", "import cli.app", LAYERS),
        ("activities/keypool.py", "import console.app", LAYERS),
        ("devstack/demo.py", "import cli.app", LAYERS),
        # the kernel's rooms
        ("riskflow/config/sites.py", "from riskflow.contracts import events", ROOMS),
        ("riskflow/config/keys.py", "from riskflow.infra import redis", ROOMS),
        ("riskflow/contracts/incidents.py", "from riskflow.llm_text import prompt", ROOMS),
        ("riskflow/infra/metrics.py", "from riskflow.contracts import assessment", ROOMS),
        ("riskflow/contracts/events.py", "from riskflow.infra import kafka", ROOMS),
        ("riskflow/names.py", "from riskflow.config import settings", BASE),
        ("riskflow/levels.py", "from riskflow.contracts import events", BASE),
        # dev tooling, purity, vision
        ("workers/worker/worker.py", "from devstack.localstack import stack", DEVSTACK),
        ("console/app.py", "from devstack.localstack import stack", DEVSTACK),
        ("workflows/assessment.py", "import redis", PURE),
        ("activities/llm.py", "import cv2", VISION),
        ("cli/app.py", "import torch", VISION),
    ],
)
def test_a_breach_is_caught(tmp_path: Path, module: str, line: str, broken: str) -> None:
    tree = _copy_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # planted breach\n")
    result = _lint(tree)
    assert result.returncode != 0
    broken_contracts = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert any(broken in row for row in broken_contracts), result.stdout
