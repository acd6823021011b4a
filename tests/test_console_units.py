"""The console's pure parts: roles, login throttling, language choice, snapshot references."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from console.auth import Authenticator, LoginThrottled, hash_password
from console.data import snapshot_key
from console.i18n import _from_accept_language
from riskflow.config.console import ConsoleSettings, ConsoleUser, Role
from riskflow.contracts.assessment import Assessment, Provenance

HASH = hash_password("pw")


def test_roles_include_the_ones_below() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR) and not Role.OPERATOR.allows(Role.ADMIN)


def test_throttling_is_per_user_and_bounded_in_memory() -> None:
    user = ConsoleUser(username="op", password_hash=HASH, role=Role.OPERATOR)
    auth = Authenticator(ConsoleSettings(users=[user], login_attempts=2))
    assert auth.login("op", "x") is None and auth.login("op", "y") is None
    with pytest.raises(LoginThrottled) as caught:
        auth.login("op", "pw")
    assert 0 < caught.value.retry_after_seconds <= 61
    auth.MAX_TRACKED = 5
    for i in range(12):  # a flood of made-up names (argon2 makes each slow: few)
        auth.login(f"nobody-{i}", "x")
    assert len(auth._failures) <= 5


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-TW,zh;q=0.9", "zh-CN"),
        ("fr, en-GB;q=0.8, zh;q=0.5", "en"),
        ("en;q=0, zh;q=0.1", "zh-CN"),  # q=0 means "not this one"
        ("de, ja", None),
        ("zh;q=abc, en", "en"),  # an unreadable weight counts as 0
        ("", None),
    ],
)
def test_accept_language(header: str, expected: str | None) -> None:
    assert _from_accept_language(header) == expected


@pytest.mark.parametrize(
    ("ref", "served"),
    [
        ("redis:snapshot:cam-a:17:3", "snapshot:cam-a:17:3"),
        ("redis:snapshot:cam-b:17:3", None),  # another camera's
        ("redis:snapshot:cam-a-x:17:3", None),  # a camera whose id starts alike
        ("redis:rf:kp:{pool}:keys", None),  # any other Redis key
        ("url:http://cam-a/snapshot:cam-a:1", None),
        (None, None),
    ],
)
def test_only_the_cameras_own_snapshot_is_served(ref: str | None, served: str | None) -> None:
    now = datetime.now(UTC)
    a = Assessment(
        assessment_id="a",
        camera_id="cam-a",
        situation="s",
        status="assessed",
        captured_at=now,
        captured_ms=0,
        assessed_at=now,
        frame_id=1,
        provenance=Provenance(image_ref=ref),
    )
    assert snapshot_key(a) == served


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "ftp://ops.example",
        "https://",
        "https://ops.example/?next=//evil.example",
        "https://ops.example/#frag",
        "https://user:secret@ops.example",
        "ops.example",
    ],
)
def test_a_public_url_that_is_no_plain_web_address_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"console\.public_url (must be|takes no)"):
        ConsoleSettings(public_url=url)


def test_notification_links_use_the_public_url_else_the_listening_address() -> None:
    assert (
        ConsoleSettings(public_url="https://ops.example/rf/").link_base()
        == "https://ops.example/rf"
    )
    assert ConsoleSettings(host="10.0.0.5", port=8400).link_base() == "http://10.0.0.5:8400"
    assert ConsoleSettings(host="::1", port=8400).link_base() == "http://[::1]:8400"
    assert ConsoleSettings(host="0.0.0.0").link_base() == ""  # no browser can open it
    assert (
        ConsoleSettings(host="0.0.0.0", public_url="http://ops.lan").link_base() == "http://ops.lan"
    )
