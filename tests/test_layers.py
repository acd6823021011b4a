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
PACKAGES = ("riskflow", "activities", "workflows", "workers", "detection_edge", "console")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
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


def test_every_kernel_module_is_under_the_kernel_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    kernel = next(c for c in config["contracts"] if c["id"] == "kernel")
    flat = {f"riskflow.{p.stem}" for p in (ROOT / "riskflow").glob("*.py") if p.stem != "__init__"}
    assert flat == set(kernel["source_modules"])


def test_the_tree_keeps_its_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("riskflow/events.py", "import workers.bridge", "kernel"),
        ("riskflow/names.py", "from activities import keypool", "kernel"),
        ("riskflow/prompt.py", "from riskflow.devstack import simulate", "kernel"),
        ("activities/task.py", "import workflows.assessment", "Entry points > workers"),
        ("workers/bridge.py", "import riskflow.cli.app", "Entry points > workers"),
        ("workers/worker.py", "from riskflow.devstack.localstack import stack", "Dev tooling"),
        ("workflows/assessment.py", "import redis", "Workflows import no I/O"),
        ("activities/llm.py", "import cv2", "Only the detection edge"),
        ("console/app.py", "from riskflow.devstack.localstack import stack", "Dev tooling"),
        ("console/api.py", "import riskflow.cli.app", "Entry points > workers"),
        ("activities/keypool.py", "import console.app", "Entry points > workers"),
        ("workers/bridge.py", "import console.app", "Entry points > workers"),
        ("riskflow/settings.py", "import console.auth", "kernel"),
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
