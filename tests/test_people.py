"""The people directory (`config/people.yaml`): a chat app's ids lead to one person, roles
are per site, and every mistake in the file is a `ConfigError` naming the file and the field."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskflow.config.console import Role
from riskflow.config.loader import load_settings
from riskflow.config.people import PeopleDirectory, Person
from riskflow.errors import ConfigError
from tests.conftest import CONFIG

WANG: dict[str, Any] = {
    "id": "wang.gong",
    "name": "王工",
    "console_user": "demo",
    "roles": {"plant-a": "operator", "*": "viewer"},
    "dingtalk": {"userid": "manager4220", "unionid": "Xb3lNiE"},
    "feishu": {"user_id": "5d9bdxxx", "union_id": "on_94a1", "open_id": "ou_7d8a"},
    "wecom": {"userid": "WangGong"},
    "phone": "+8613800000000",
    "email": "wang@example.com",
}
LI: dict[str, Any] = {
    "id": "li",
    "name": "李工",
    "roles": {"plant-b": "admin"},
    "feishu": {"open_id": "ou_li"},
}
SITES = [{"id": "plant-a", "cameras": ["1"]}, {"id": "plant-b", "cameras": ["2"]}]


def config(tmp_path: Path, people: list[dict[str, Any]]) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    (target / "sites.yaml").write_text(yaml.safe_dump({"sites": SITES}, allow_unicode=True))
    (target / "people.yaml").write_text(yaml.safe_dump({"people": people}, allow_unicode=True))
    return target


def directory(*people: dict[str, Any]) -> PeopleDirectory:
    return PeopleDirectory.model_validate(list(people))


def test_the_shipped_config_has_an_empty_directory() -> None:
    assert load_settings(CONFIG).people.root == []


def test_people_load_from_their_file(tmp_path: Path) -> None:
    people = load_settings(config(tmp_path, [WANG, LI])).people
    wang = people.by_id("wang.gong")
    assert wang is not None and wang.name == "王工" and wang.phone == "+8613800000000"
    assert people.by_id("nobody") is None


@pytest.mark.parametrize(
    ("vendor", "ids"),
    [
        ("dingtalk", {"userid": "manager4220"}),
        ("dingtalk", {"userid": "someone-else", "unionid": "Xb3lNiE"}),
        ("feishu", {"open_id": "ou_7d8a", "union_id": None, "user_id": None}),
        ("feishu", {"union_id": "on_94a1"}),
        ("feishu", {"user_id": "5d9bdxxx", "open_id": "ou_of_another_app"}),
        ("wecom", {"userid": "WangGong"}),
        ("wecom", {"userid": "wanggong"}),  # WeCom userids are not case-sensitive
    ],
)
def test_a_callbacks_ids_lead_to_the_person(vendor: Any, ids: dict[str, str | None]) -> None:
    found = directory(WANG, LI).person(vendor, ids)
    assert found is not None and found.id == "wang.gong"


@pytest.mark.parametrize(
    ("vendor", "ids"),
    [
        ("feishu", {"open_id": "OU_7D8A"}),  # Feishu ids are compared exactly
        ("dingtalk", {"userid": ""}),
        ("feishu", {}),
        ("wecom", {"userid": "manager4220"}),  # a DingTalk id is not a WeCom one
        ("feishu", {"chat_id": "ou_7d8a"}),  # not a person's id kind
    ],
)
def test_ids_nobody_holds_lead_to_nobody(vendor: Any, ids: dict[str, str | None]) -> None:
    assert directory(WANG, LI).person(vendor, ids) is None


def test_the_strongest_id_decides_when_ids_name_different_people() -> None:
    """Feishu's user_id (one per tenant) outranks an open_id (one per app)."""
    found = directory(WANG, LI).person("feishu", {"open_id": "ou_li", "user_id": "5d9bdxxx"})
    assert found is not None and found.id == "wang.gong"


def test_roles_are_per_site_with_a_fallback_for_every_site() -> None:
    wang, li = Person.model_validate(WANG), Person.model_validate(LI)
    assert wang.role_at("plant-a") is Role.OPERATOR and wang.may("plant-a", Role.OPERATOR)
    assert wang.role_at("plant-b") is Role.VIEWER  # "*"
    assert wang.may("plant-b", Role.VIEWER) and not wang.may("plant-b", Role.OPERATOR)
    assert li.may("plant-b", Role.OPERATOR)  # admin includes operator
    assert li.role_at("plant-a") is None and not li.may("plant-a", Role.VIEWER)


@pytest.mark.parametrize(
    ("people", "error"),
    [
        ([WANG, {**LI, "id": "wang.gong"}], "person id 'wang.gong' is listed twice"),
        (
            [WANG, {**LI, "wecom": {"userid": "wanggong"}}],
            "wecom id 'wanggong' belongs to both 'wang.gong' and 'li'",
        ),
        ([{**LI, "roles": {"plant-c": "operator"}}], "not configured: ['li: plant-c']"),
        ([{**LI, "roles": {"plant-b": "boss"}}], "people.0.roles.plant-b"),
        ([{**LI, "console_user": "ghost"}], "console users that are not configured"),
        ([{**LI, "phone": "13800000000"}], "people.0.phone"),  # not E.164
        ([{**LI, "email": "li at example.com"}], "people.0.email"),
        ([{**LI, "feishu": {"open_id": "ou li"}}], "people.0.feishu.open_id"),
        ([{**LI, "feishu": {"chat_id": "oc_1"}}], "people.0.feishu.chat_id"),
        ([{**LI, "name": ""}], "people.0.name"),
    ],
)
def test_mistakes_name_the_file_and_the_field(
    tmp_path: Path, people: list[dict[str, Any]], error: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(config(tmp_path, people))
    message = str(raised.value)
    assert error in message
    assert "people.yaml" in message


def test_a_person_with_the_same_id_twice_in_one_app_is_one_person() -> None:
    same = {**LI, "dingtalk": {"userid": "li-1", "unionid": "li-1"}}
    found = directory(same).person("dingtalk", {"unionid": "li-1"})
    assert found is not None and found.id == "li"
