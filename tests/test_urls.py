"""The snapshot URL validator: only http(s) to a named (and, if configured, allowed) host."""

from __future__ import annotations

import pytest

from riskflow.urls import UnsafeURLError, check_snapshot_url, host_allowed

SAFE = [
    "https://cdn.example.com/snap/cam1/42.jpg",
    "http://cdn.example.com:8080/a.jpg?sig=abc",
    "HTTPS://CDN.EXAMPLE.COM/a.jpg",
]

UNSAFE = {
    "/app/config/api_keys.yaml": "scheme",
    "config/api_keys.yaml": "scheme",
    "file:///app/config/api_keys.yaml": "scheme",
    "FILE:///etc/passwd": "scheme",
    "file://localhost/etc/passwd": "scheme",
    "ftp://files.example.com/a.jpg": "scheme",
    "data:image/jpeg;base64,AAAA": "scheme",
    "oss://bucket/a.jpg": "scheme",
    "//cdn.example.com/a.jpg": "scheme",
    "http:///etc/passwd": "no host",
    "https://user:secret@cdn.example.com/a.jpg": "user info",
    "https://cdn.example.com@evil.example.net/a.jpg": "user info",
    "https://cdn.example.com\\@evil.example.net/a.jpg": "backslash",
    "https://cdn.example.com/a.jpg\n/etc/passwd": "control",
    " https://cdn.example.com/a.jpg": "whitespace",
    "https://cdn.example.com:99999/a.jpg": "not a valid URL",
    "https://cdn.example.com:0/a.jpg": "port 0",
    "https://[::1/a.jpg": "not a valid URL",
}


@pytest.mark.parametrize("url", SAFE)
def test_http_urls_to_a_host_pass_unchanged(url: str) -> None:
    assert check_snapshot_url(url) == url


@pytest.mark.parametrize(("url", "reason"), UNSAFE.items())
def test_everything_else_is_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURLError) as caught:
        check_snapshot_url(url)
    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_allowed_hosts_exact_or_domain() -> None:
    allowed = ["cdn.example.com", ".snapshots.example.org"]
    assert check_snapshot_url("https://CDN.example.com./a.jpg", allowed)
    assert check_snapshot_url("https://snapshots.example.org/a.jpg", allowed)
    assert check_snapshot_url("https://eu.snapshots.example.org/a.jpg", allowed)
    for url in (
        "https://evil.example.net/a.jpg",
        "https://cdn.example.com.evil.example.net/a.jpg",
        "https://evilsnapshots.example.org/a.jpg",
        "https://evil.example.net/cdn.example.com/a.jpg",
        "https://evil.example.net/a.jpg#@cdn.example.com",
        "https://127.0.0.1/a.jpg",
    ):
        with pytest.raises(UnsafeURLError, match="not in the allowed"):
            check_snapshot_url(url, allowed)
    assert not host_allowed("example.org", allowed)
    # The scheme rule holds whatever the host list says.
    with pytest.raises(UnsafeURLError, match="scheme"):
        check_snapshot_url("file://cdn.example.com/etc/passwd", allowed)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:6379/",
        "http://127.0.0.1/a.jpg",
        "http://2130706433/a.jpg",
        "http://0x7f000001/a.jpg",
        "https://[2001:db8::1]/a.jpg",
        "http://cam/a.jpg",
        "http://api.localhost/a.jpg",
    ],
)
def test_ip_literals_and_local_names_pass_only_when_listed(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="not a DNS name"):
        check_snapshot_url(url)
    host = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0] if "[" not in url else ""
    if host:
        assert check_snapshot_url(url, [host]) == url


def test_a_refused_url_never_repeats_its_credentials() -> None:
    with pytest.raises(UnsafeURLError) as caught:
        check_snapshot_url("https://user:s3cret-pw@cdn.example.com/a.jpg?token=t0k3n")
    assert "s3cret-pw" not in str(caught.value) and "t0k3n" not in str(caught.value)
