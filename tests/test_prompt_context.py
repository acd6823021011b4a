"""Site and camera context, the rubric and the language: configuration and prompt text (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.task import PromptBook, candidate_spec
from devstack.fake_dashscope.answer import answer_for
from devstack.simulate import scene_event
from riskflow.config.context import DEFAULT_RUBRIC, Rubric
from riskflow.config.loader import load_settings
from riskflow.config.replay import Candidate
from riskflow.config.settings import Settings
from riskflow.errors import ConfigError
from riskflow.levels import RiskLevel
from riskflow.llm_text.prompt import parse_answer, system_prompt, user_prompt
from tests.conftest import CONFIG
from tests.test_significance import T0

SITES = """
sites:
  - id: plant-a
    name: Plant A
    language: zh-CN
    timezone: Asia/Shanghai
    cameras: ["dock-1", "ward-2"]
    context:
      watches: a warehouse floor
      hazards: [forklift traffic]
      working_hours: "Mon-Sat 07:00-19:00"
      classes: {Fall: a worker lying on the floor}
      zones: {dock_edge: "the loading dock edge, a 1.2 m drop"}
      instructions: Breaks are at 12:00.
      rubric:
        version: plant-a-3
        levels: {none: empty, low: routine work, medium: watch it, high: send a first aider,
                 critical: call 120}
      cameras:
        dock-1: {watches: loading dock 3, hazards: [reversing trucks]}
"""
CAMERAS = """
cameras:
  - id: dock-1
    source: rtsp://cam/dock
    zones: [{name: dock_edge, points: [[0, 580], [400, 580], [400, 720], [0, 720]]}]
"""


def _settings(tmp_path: Path, sites: str = SITES) -> Settings:
    (tmp_path / "sites.yaml").write_text(sites)
    (tmp_path / "cameras.yaml").write_text(CAMERAS)
    return load_settings(tmp_path)


def test_camera_context_zone_and_rubric_reach_the_prompt(tmp_path: Path) -> None:
    spec = PromptBook.of(_settings(tmp_path)).spec("dock-1")
    event = scene_event("dock-1", 3, T0, people=3, falls=1)  # the fallen one stands at x 100-320
    system, user = system_prompt(spec), user_prompt(event, "fall", [], spec)
    assert "What this camera watches: loading dock 3" in system  # the camera's own wins
    assert "Known hazards here: forklift traffic; reversing trucks" in system  # lists add
    assert "dock_edge = the loading dock edge, a 1.2 m drop" in system
    assert "rubric plant-a-3" in system and '- "critical": call 120' in system
    assert "Answer language: zh-CN" in system and "JSON" in system
    assert "Fall = a worker lying on the floor" in user  # the site's glossary over the default
    assert "Normal = a person standing" in user  # the default glossary for the rest
    fallen = next(line for line in user.splitlines() if line.startswith("- Fall"))
    assert fallen.endswith("zone=dock_edge")
    assert not any("zone=" in line for line in user.splitlines() if line.startswith("- Normal"))
    assert "Local time: " in user and "(Asia/Shanghai)" in user


def test_the_site_context_applies_to_its_other_cameras_and_v1_stays_generic(
    tmp_path: Path,
) -> None:
    book = PromptBook.of(_settings(tmp_path))
    spec = book.spec("ward-2")
    assert spec.context.watches == "a warehouse floor" and spec.zones == []
    v1 = candidate_spec(spec, Candidate(name="old", prompt="v1"))
    assert "warehouse" not in system_prompt(v1) and "Local time" not in user_prompt(
        scene_event("ward-2", 1, T0, 1, 0), "person", [], v1
    )
    assert v1.provenance("dashscope", "qwen-plus", scene_event("ward-2", 1, T0, 1, 0)).model_dump(
        include={"prompt_version", "rubric_version"}
    ) == {"prompt_version": "v1", "rubric_version": ""}


def test_unconfigured_camera_gets_english_and_the_default_rubric() -> None:
    spec = PromptBook([], load_settings(CONFIG).significance).spec("elsewhere")
    assert spec.language == "en" and spec.rubric == DEFAULT_RUBRIC
    assert "Answer language: en" in system_prompt(spec)


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ("      watches: a warehouse floor", "      watched: x", "sites.0.context.watched"),
        (
            "        dock-1: {watches",
            "        dock-1: {colour: red, watches",
            "sites.0.context.cameras.dock-1.colour",
        ),
        ("        dock-1: {", "        dock-9: {", "not in this site: \\['dock-9'\\]"),
        ("critical: call 120}", "}", "missing: \\['critical'\\]"),
        ("        version: plant-a-3", "        version: 3\n        tone: calm", "rubric.tone"),
    ],
)
def test_bad_context_names_the_file_and_field(
    tmp_path: Path, old: str, new: str, error: str
) -> None:
    assert old in SITES
    with pytest.raises(ConfigError, match=r"sites\.yaml: .*" + error):
        _settings(tmp_path, SITES.replace(old, new))


def test_rubric_version_is_explicit_or_a_content_hash() -> None:
    levels = {level: f"means {level.value}" for level in RiskLevel}
    hashed = Rubric(levels=levels).effective_version
    assert hashed.startswith("sha256:") and hashed == Rubric(levels=levels).effective_version
    changed = Rubric(levels={**levels, RiskLevel.LOW: "other"}).effective_version
    assert changed != hashed
    assert Rubric(version="r7", levels=levels).effective_version == "r7"


def test_local_server_answers_in_the_language_asked(tmp_path: Path) -> None:
    spec = PromptBook.of(_settings(tmp_path)).spec("dock-1")
    event = scene_event("dock-1", 3, T0, people=2, falls=1)
    messages = [
        {"role": "system", "content": system_prompt(spec)},
        {"role": "user", "content": user_prompt(event, "fall", [], spec)},
    ]
    chinese = parse_answer(answer_for(messages))
    assert chinese.risk_level == RiskLevel.HIGH and "倒地" in chinese.summary
    english = candidate_spec(spec, Candidate(name="en", language="en"))
    messages[0]["content"] = system_prompt(english)
    assert "fallen" in parse_answer(answer_for(messages)).summary
