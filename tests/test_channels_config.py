"""`notifications:` in riskflow.yaml: validated at start with file and field named; secrets by
environment variable name, resolved in the worker, never printed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from riskflow.config.channels import ChannelSecrets, local_receiver_url
from riskflow.config.loader import load_settings
from riskflow.errors import ConfigError
from tests.conftest import CONFIG


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    return target


def _with_channels(config_dir: Path, channels: str, ladder: str | None = None) -> None:
    """Replace the channels (and what follows them) with `channels`, and the ladder with one
    level naming `ladder` (default: the first channel given)."""
    path = config_dir / "riskflow.yaml"
    text = path.read_text().split("\nnotifications:")[0]
    first = ladder or channels.strip().split(":")[0]
    path.write_text(
        text
        + "\nnotifications:\n  channels:\n"
        + channels
        + f"\nincidents:\n  escalation:\n    - {{after_seconds: 0, channels: [{first}]}}\n"
    )


def test_shipped_channels_go_to_the_local_receiver() -> None:
    settings = load_settings(CONFIG)
    channels = settings.notifications.channels
    assert {c.type for c in channels.values()} == {
        "webhook",
        "dingtalk",
        "wecom",
        "feishu",
        "email",
    }
    secrets = ChannelSecrets.from_config(settings.notifications, {})
    assert secrets.url("ops-group") is None  # -> the local receiver
    assert "placeholder" not in repr(settings)
    assert local_receiver_url("dingtalk", "ops-group", "http://127.0.0.1:8090/") == (
        "http://127.0.0.1:8090/dingtalk/robot/send?access_token=ops-group"
    )


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("    hook: {type: webhook}", r"riskflow\.yaml: notifications\.channels\.hook.*secret"),
        ("    x: {type: pager}", r"riskflow\.yaml: notifications\.channels\.x.*pager"),
        (
            "    d: {type: dingtalk, url: 'https://a', url_env: D_URL}",
            r"notifications\.channels\.d\.dingtalk.*'url' or 'url_env'",
        ),
        ("    m: {type: email}", r"notifications\.channels\.m\.email\.recipients"),
        (
            "    m: {type: email, recipients: [a@b.c], password_env: P}",
            r"notifications\.channels\.m\.email.*username",
        ),
        ("    'bad name': {type: wecom}", r"channel names"),
    ],
)
def test_bad_channels_name_file_and_field(config_dir: Path, entry: str, error: str) -> None:
    _with_channels(config_dir, entry + "\n")
    with pytest.raises(ConfigError, match=error):
        load_settings(config_dir)


def test_secret_env_is_resolved_in_the_worker_or_named(config_dir: Path) -> None:
    _with_channels(
        config_dir,
        "    ops: {type: dingtalk, url_env: DING_URL, secret_env: DING_SECRET}\n"
        "    mail: {type: email, host: smtp.example.com, username: rf, password_env: SMTP_PW,"
        " recipients: [ops@example.com]}\n",
    )
    settings = load_settings(config_dir)
    with pytest.raises(ConfigError) as info:
        ChannelSecrets.from_config(settings.notifications, {"DING_URL": "https://x?access_token=t"})
    message = str(info.value)
    assert "notifications.channels.ops.secret_env ($DING_SECRET)" in message
    assert "notifications.channels.mail.password_env ($SMTP_PW)" in message
    assert "access_token=t" not in message
    environ = {"DING_URL": "https://x?access_token=t", "DING_SECRET": "SECx", "SMTP_PW": "pw"}
    secrets = ChannelSecrets.from_config(settings.notifications, environ)
    assert (secrets.url("ops"), secrets.secret("ops"), secrets.password("mail")) == (
        "https://x?access_token=t",
        "SECx",
        "pw",
    )
    assert secrets.all_configured(settings.notifications)


def test_only_channels_without_an_address_use_the_local_receiver(config_dir: Path) -> None:
    _with_channels(
        config_dir,
        "    real: {type: dingtalk, url_env: DING_URL, secret_env: DING_SECRET}\n"
        "    local: {type: wecom}\n"
        "    smtp: {type: email, host: smtp.example.com, recipients: [ops@example.com]}\n",
    )
    notifications = load_settings(config_dir).notifications
    assert list(notifications.local_only().channels) == ["local"]
    # The receiver resolves only its channels: the real robot's variables need not be set.
    ChannelSecrets.from_config(notifications.local_only(), {})


def test_a_ladder_naming_an_unknown_channel_stops_the_start(config_dir: Path) -> None:
    """A typo in an escalation level's channels (or fallback channels), in the default ladder
    or a site's, is refused when the settings load, not at the first send."""
    _with_channels(config_dir, "    ops-group: {type: wecom}\n", ladder="ops-grup")
    with pytest.raises(ConfigError, match=r"escalation level 0 names channels \['ops-grup'\]"):
        load_settings(config_dir)
    _with_channels(config_dir, "    ops-group: {type: wecom}\n")
    path = config_dir / "riskflow.yaml"
    path.write_text(
        path.read_text().replace(
            "channels: [ops-group]}", "channels: [ops-group], fallback_channels: [mail]}"
        )
    )
    with pytest.raises(ConfigError, match=r"names channels \['mail'\]"):
        load_settings(config_dir)
