"""Workflow code reads no clock, randomness or environment of its own (Temporal's replay needs
`workflow.now()`, `workflow.random()`, `workflow.uuid4()`). The worker passes `workflows/`
through Temporal's sandbox instead of re-importing it for every run, so the sandbox's run-time
checks no longer look at this code: this static check (with the `pure-workflows` import
contract) does. Pure logic: the sources are parsed, nothing runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
# (object, attribute) calls that read the host's clock, randomness or environment.
FORBIDDEN_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("uuid", "uuid1"),
    ("uuid", "uuid4"),
    ("os", "getenv"),
}
FORBIDDEN_MODULES = {"random", "secrets", "os", "threading", "socket", "subprocess", "uuid"}


def impurities(source: str) -> list[str]:
    """What in `source` reads the host: forbidden calls and imports, as 'line: text'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else ""
            name = owner.attr if isinstance(owner, ast.Attribute) else name  # datetime.datetime
            if (name, node.func.attr) in FORBIDDEN_CALLS:
                found.append(f"{node.lineno}: {name}.{node.func.attr}()")
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        found += [
            f"{node.lineno}: import {m}" for m in modules if m.split(".")[0] in FORBIDDEN_MODULES
        ]
    return found


def test_workflow_code_reads_no_clock_randomness_or_environment() -> None:
    sources = sorted(WORKFLOWS.glob("*.py"))
    assert sources
    for path in sources:
        assert impurities(path.read_text(encoding="utf-8")) == [], path.name


@pytest.mark.parametrize(
    "line",
    [
        "started = datetime.now()",
        "started = datetime.datetime.utcnow()",
        "day = date.today()",
        "import random",
        "from uuid import uuid4",
        "key = uuid.uuid4()",
        "home = os.getenv('HOME')",
    ],
)
def test_a_breach_is_caught(line: str) -> None:
    assert impurities(f"x = 1\n{line}\n") != []


def test_the_workflow_clock_is_allowed() -> None:
    assert impurities("now = workflow.now()\nrng = workflow.random()\n") == []
