from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from riskflow.config.keys import KeyRing
from riskflow.config.loader import load_settings
from riskflow.errors import ConfigError
from tests.conftest import CONFIG


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    return target


def test_shipped_config_loads_in_the_seed_shape() -> None:
    settings = load_settings(CONFIG)
    keys = settings.keys.api_keys
    assert [k.key_id for k in keys] == ["key_1", "key_2"]
    assert keys[0].qps_limit == 10 and keys[0].rpm_limit == 300 and keys[0].enabled
    assert settings.keys.scheduler.key_cooldown_seconds == 60
    assert settings.temporal_address is None  # empty means "the local stack's"
    assert "sk-local-demo-1" not in repr(settings)  # secrets never print


def test_environment_overrides_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKFLOW_LOCAL__KAFKA_PORT", "19999")
    monkeypatch.setenv("RISKFLOW_REDIS_URL", "redis://redis.example:6379/1")
    # api_keys.yaml too, merged into the file's other settings (the field once had an alias,
    # and pydantic-settings then read it without the prefix: this was silently ignored).
    monkeypatch.setenv("RISKFLOW_KEYS__SCHEDULER__PACING_MARGIN", "0.5")
    monkeypatch.setenv("KEYS__SCHEDULER__WINDOW_GUARD_MS", "999")  # no prefix: not ours
    settings = load_settings(CONFIG)
    assert settings.local.kafka_port == 19999
    assert settings.redis_url == "redis://redis.example:6379/1"
    scheduler = settings.keys.scheduler
    assert scheduler.pacing_margin == 0.5 and scheduler.window_guard_ms == 20
    assert [k.key_id for k in settings.keys.api_keys] == ["key_1", "key_2"]


def test_bad_value_names_the_file_and_field(config_dir: Path) -> None:
    path = config_dir / "api_keys.yaml"
    text = path.read_text()
    assert '"key_1"\n    qps_limit: 10' in text
    path.write_text(text.replace('"key_1"\n    qps_limit: 10', '"key_1"\n    qps_limit: 0'))
    with pytest.raises(ConfigError) as info:
        load_settings(config_dir)
    message = str(info.value)
    assert "api_keys.yaml" in message
    assert "api_keys.0.qps_limit" in message and "greater than 0" in message


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKFLOW_LOCAL__KAFKA_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="RISKFLOW_LOCAL__KAFKA_PORT"):
        load_settings(CONFIG)
    monkeypatch.delenv("RISKFLOW_LOCAL__KAFKA_PORT")
    monkeypatch.setenv("RISKFLOW_KEYS__SCHEDULER__PACING_MARGIN", "-1")
    with pytest.raises(ConfigError, match="RISKFLOW_KEYS__SCHEDULER__PACING_MARGIN"):
        load_settings(CONFIG)


def test_unknown_field_and_broken_yaml_are_errors(config_dir: Path) -> None:
    main = config_dir / "riskflow.yaml"
    main.write_text(main.read_text() + "\nnot_a_setting: 1\n")
    with pytest.raises(ConfigError, match=r"riskflow\.yaml: not_a_setting"):
        load_settings(config_dir)
    main.write_text("bridge: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config_dir)


def test_missing_config_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope")


def test_key_env_reference_and_its_errors(config_dir: Path) -> None:
    (config_dir / "api_keys.yaml").write_text(
        "api_keys:\n"
        "  - {key_id: prod_1, key_env: DS_KEY_1, qps_limit: 5, rpm_limit: 100, quota_group: acct}\n"
        "quota_groups:\n  acct: {qps_limit: 8, rpm_limit: 150}\n"
    )
    settings = load_settings(config_dir)
    ring = KeyRing.from_config(settings.keys, {"DS_KEY_1": "sk-real"})
    assert ring.secret("prod_1") == "sk-real"
    assert "sk-real" not in repr(ring)
    with pytest.raises(ConfigError, match=r"prod_1 \(\$DS_KEY_1\)"):
        KeyRing.from_config(settings.keys, {})


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("{key_id: a, qps_limit: 1, rpm_limit: 1}", "exactly one of 'key'"),
        ("{key_id: a, key: x, key_env: Y, qps_limit: 1, rpm_limit: 1}", "exactly one of 'key'"),
        ("{key_id: a, key: x, qps_limit: 1, rpm_limit: 1, quota_group: nope}", "not defined"),
        ("{key_id: 'bad id', key: x, qps_limit: 1, rpm_limit: 1}", "api_keys.0.key_id"),
    ],
)
def test_invalid_key_entries(config_dir: Path, entry: str, error: str) -> None:
    (config_dir / "api_keys.yaml").write_text(f"api_keys:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=error):
        load_settings(config_dir)


def test_duplicate_key_ids_rejected(config_dir: Path) -> None:
    (config_dir / "api_keys.yaml").write_text(
        "api_keys:\n  - {key_id: a, key: x, qps_limit: 1, rpm_limit: 1}\n"
        "  - {key_id: a, key: y, qps_limit: 1, rpm_limit: 1}\n"
    )
    with pytest.raises(ConfigError, match="appears twice"):
        load_settings(config_dir)


def test_temporal_security_options(tmp_path: Path) -> None:
    from riskflow.config.services import TemporalSettings
    from workers.common.client import security

    assert security(TemporalSettings(), {}) == {}
    assert security(TemporalSettings(tls=True), {}) == {"tls": True}
    cloud = TemporalSettings(api_key_env="TEMPORAL_API_KEY")
    assert security(cloud, {"TEMPORAL_API_KEY": "k"}) == {"api_key": "k", "tls": True}
    with pytest.raises(ConfigError, match="TEMPORAL_API_KEY"):
        security(cloud, {})
    (tmp_path / "c.pem").write_bytes(b"cert")
    (tmp_path / "k.pem").write_bytes(b"key")
    mtls = TemporalSettings(client_cert_path=tmp_path / "c.pem", client_key_path=tmp_path / "k.pem")
    tls = security(mtls, {})["tls"]
    assert tls.client_cert == b"cert" and tls.client_private_key == b"key"


def test_sites_place_cameras_and_reject_conflicts(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(
        "sites:\n"
        "  - {id: plant-a, language: zh-CN, timezone: Asia/Shanghai, cameras: ['1', '2']}\n"
        "  - {id: default, language: en}\n"
    )
    settings = load_settings(tmp_path)
    assert settings.site("2").id == "plant-a" and settings.site("2").language == "zh-CN"
    assert settings.site("9").id == "default"
    assert settings.site("1").zone.key == "Asia/Shanghai"
    (tmp_path / "sites.yaml").write_text(
        "sites:\n  - {id: a, cameras: ['1']}\n  - {id: b, cameras: ['1']}\n"
    )
    with pytest.raises(ConfigError, match="camera '1' is in sites 'a' and 'b'"):
        load_settings(tmp_path)
    (tmp_path / "sites.yaml").write_text("sites:\n  - {id: a, timezone: Mars/Olympus}\n")
    with pytest.raises(ConfigError, match=r"sites\.yaml: sites\.0\.timezone: .*unknown IANA"):
        load_settings(tmp_path)
    (tmp_path / "sites.yaml").write_text("sites:\n  - {id: a, colour: red}\n")
    with pytest.raises(ConfigError, match="colour"):
        load_settings(tmp_path)


def test_no_sites_means_one_default_site() -> None:
    settings = load_settings(CONFIG)
    assert settings.site("1").id == "default" and settings.site("1").timezone == "UTC"


@pytest.mark.parametrize(
    ("section", "typo"),
    [
        ("kafka", "partitons: 3"),
        ("bridge", "max_in_fligt: 5"),
        ("llm", "text_modle: qwen-max"),
        ("local", "kafka_prot: 19092"),
        ("metrics", "enabeld: false"),
        ("supervisor", "start_retires: 1"),
        ("tracing", "exportr: otlp"),
    ],
)
def test_a_typo_in_any_section_names_the_file_and_field(
    tmp_path: Path, section: str, typo: str
) -> None:
    shutil.copytree(CONFIG, tmp_path / "c")
    (tmp_path / "c" / "riskflow.yaml").write_text(f"{section}:\n  {typo}\n")
    field = typo.split(":")[0]
    with pytest.raises(ConfigError, match=rf"riskflow\.yaml: {section}\.{field}: Extra inputs"):
        load_settings(tmp_path / "c")
