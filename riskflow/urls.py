"""URLs that come from messages: the one validator for every snapshot URL.

A snapshot URL (`snapshot.ref` with `store: "url"`) is handed to the DashScope SDK, which
uploads local files it is given (a path, `file://...`) to the provider. Only absolute
http(s) URLs to a named host pass; nothing that could name a local file, carry credentials
or confuse one parser against another.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from riskflow.errors import RiskflowError
from riskflow.redact import redact_url

SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 2048


class UnsafeURLError(RiskflowError, ValueError):
    """A URL that must not be fetched or handed on; `reason` says why in a few words."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"unsafe snapshot URL {redact_url(url)[:200]!r}: {reason}")
        self.url = url
        self.reason = reason


def check_snapshot_url(url: str, allowed_hosts: Collection[str] = ()) -> str:
    """Return `url` unchanged if it is an absolute http(s) URL to an allowed host.

    `allowed_hosts`: host names (case-insensitive, exact) or `.example.com` for that domain and
    every subdomain; empty allows any host. Raises `UnsafeURLError` for any other scheme (file,
    ftp, data, ...), a local path, user info (`user:pass@`), backslashes, whitespace or control
    characters, a missing or invalid host or port, or a host not allowed.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURLError(url, f"longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeURLError(url, "whitespace or control characters")
    if "\\" in url:
        raise UnsafeURLError(url, "backslash (parsers disagree on it)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(url, f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UnsafeURLError(url, f"scheme {scheme or '(none)'!r} is not http or https")
    if "@" in parts.netloc:
        raise UnsafeURLError(url, "user info (credentials) in the URL")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURLError(url, "no host")
    if port == 0:
        raise UnsafeURLError(url, "port 0")
    if allowed_hosts and not host_allowed(host, allowed_hosts):
        raise UnsafeURLError(url, f"host {host!r} is not in the allowed snapshot hosts")
    if not allowed_hosts and not is_dns_name(host):
        raise UnsafeURLError(
            url, f"host {host!r} is not a DNS name (IP addresses and localhost need listing)"
        )
    return url


def is_dns_name(host: str) -> bool:
    """A dotted DNS name whose last label is alphabetic (`cdn.example.com`): not an IP literal
    in any notation (`169.254.169.254`, `2130706433`, `0x7f000001`, `[::1]`), not
    `localhost`. Such hosts pass only when `allowed_hosts` names them."""
    labels = host.lower().split(".")
    if len(labels) < 2 or labels[-1] == "localhost" or not labels[-1].isalpha():
        return False
    return all(label and label.replace("-", "").isalnum() for label in labels)


def host_allowed(host: str, allowed_hosts: Collection[str]) -> bool:
    """Whether `host` is named in `allowed_hosts` (see `check_snapshot_url`)."""
    host = host.lower().rstrip(".")
    for allowed in allowed_hosts:
        allowed = allowed.lower().rstrip(".")
        if allowed.startswith("."):
            if host == allowed[1:] or host.endswith(allowed):
                return True
        elif host == allowed:
            return True
    return False
