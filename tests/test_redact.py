"""Source labels never carry credentials: `riskflow.redact.redact_url` (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from riskflow.contracts.events import DetectionEvent
from riskflow.redact import redact_url


@pytest.mark.parametrize(
    ("url", "label"),
    [
        (
            "rtsp://admin:p@ss@cam.local:554/stream?user=a&password=zz",
            "rtsp://cam.local:554/stream",
        ),
        ("rtsp://admin:pw@[fe80::1%25eth0]:554/h264", "rtsp://[fe80::1%25eth0]:554/h264"),
        ("admin:pw@cam.local:554/live", "cam.local:554/live"),  # no scheme
        ("rtsp://admin:p%40ss%3A1@cam/s", "rtsp://cam/s"),  # percent-encoded password
        ("rtsp://cam/s?channel=1&subtype=0", "rtsp://cam/s?channel=1&subtype=0"),
        ("http://cam/v.mjpg?Pass%77ord=x&res=hd", "http://cam/v.mjpg?res=hd"),  # encoded name
        ("https://cam/v?X-Amz-Signature=ab&X-Amz-Credential=cd&n=1", "https://cam/v?n=1"),
        ("http://cam/v?access_token=t;client_secret=s;id=2", "http://cam/v?id=2"),
        ("http://cam/v#access_token=t", "http://cam/v"),  # fragments can carry tokens
        ("rtsp://u:pa/ss@cam/s", "rtsp://cam/s"),  # malformed: unencoded / in the password
        ("rtsp://cam/s?password=p@ss", "rtsp://cam/s"),
        ("rtsp://:onlypassword@cam", "rtsp://cam"),
        ("/videos/entrance.mp4", "/videos/entrance.mp4"),
        ("0", "0"),
        ("", ""),
    ],
)
def test_credentials_are_stripped(url: str, label: str) -> None:
    assert redact_url(url) == label


# What FFmpeg accepts unencoded in user info: anything but the authority's ends / ? #.
_USERINFO = st.text(
    st.characters(codec="ascii", exclude_characters="/?#", exclude_categories=["Cc"]),
    min_size=3,
    max_size=20,
)
_ANY = st.text(min_size=3, max_size=20)
_HOSTS = st.sampled_from(["cam.local", "10.0.0.7", "[::1]", "[fe80::1%25eth0]", "nvr-2.example"])
_SECRET_PARAMS = st.sampled_from(
    ["password", "passwd", "pwd", "pass", "token", "access_token", "auth", "apikey", "api_key",
     "key", "secret", "signature", "sig", "user", "username", "Password", "X-Amz-Signature"]
)  # fmt: skip


@given(
    scheme=st.sampled_from(["rtsp://", "rtsps://", "http://", "https://", ""]),
    user=_USERINFO | _ANY.map(lambda s: quote(s, safe="")),
    password=_USERINFO | _ANY.map(lambda s: quote(s, safe="")),
    host=_HOSTS,
    port=st.sampled_from(["", ":554", ":8554"]),
    param=_SECRET_PARAMS,
    value=_ANY.map(lambda s: quote(s, safe="")),
    before=st.booleans(),
)
def test_no_generated_secret_survives(
    scheme: str,
    user: str,
    password: str,
    host: str,
    port: str,
    param: str,
    value: str,
    before: bool,
) -> None:
    public = f"{scheme}{host}{port}/Streaming/Channels/101"
    for secret in (user, password, value):
        assume(secret not in public + "?channel=1")
    query = f"{param}={value}&channel=1" if before else f"channel=1&{param}={value}"
    url = f"{scheme}{user}:{password}@{host}{port}/Streaming/Channels/101?{query}"
    label = redact_url(url)
    for secret in (user, password, value):
        assert secret not in label
    assert label == public + "?channel=1"


def test_a_detection_event_from_any_publisher_keeps_no_credentials() -> None:
    event = DetectionEvent.model_validate(
        {
            "camera_id": "c1",
            "frame_id": 0,
            "captured_at": datetime.now(UTC),
            "image": {"width": 640, "height": 480},
            "model_name": "m",
            "source": "rtsp://admin:p@ss@cam.local:554/stream?user=a&password=zz",
        }
    )
    assert event.source == "rtsp://cam.local:554/stream"
