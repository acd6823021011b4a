"""Source URLs without credentials, for logs, metrics labels and published events.

`redact_url` reads a URL the way FFmpeg's `av_url_split` (libavformat/utils.c) does, since
FFmpeg (through OpenCV) is what opens the camera: the authority ends at the first `/`, `?` or
`#` after the scheme, and the user info ends at the *last* `@` inside it, so a password may
hold an `@` (`rtsp://admin:p@ss@cam/stream` is the host `cam`). The result keeps the scheme,
host, port and path, drops the user info and the fragment, and drops every query parameter
whose name (percent-decoded, any case) is credential-like: an exact name in
`CREDENTIAL_NAMES` or a name holding one of `CREDENTIAL_PARTS` (so `X-Amz-Signature`,
`client_secret`, `userPassword`, `auth_token` all go).

Limits: a secret written into the path itself (`/live/<token>`) cannot be told from a
path and is kept; a password with an unencoded `/`, `?` or `#` is not a URL FFmpeg can open
either (percent-encode it: `%2F`, `%3F`, `%23`); when the path holds an `@`, everything up
to its last `@` is dropped as well (a label may lose detail, never a secret).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

CREDENTIAL_NAMES = frozenset(
    {
        "u", "p", "pw", "pwd", "pass", "passwd", "password", "passphrase", "user", "username",
        "usr", "login", "uid", "token", "auth", "key", "apikey", "api_key", "secret", "sig",
        "signature", "credential", "credentials", "session", "sessionid", "sid", "code",
    }
)  # fmt: skip
CREDENTIAL_PARTS = (
    "pass", "pwd", "token", "secret", "auth", "key", "sig", "cred", "session", "user", "login",
)  # fmt: skip

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SEPARATOR = re.compile(r"([&;])")


def is_credential_name(name: str) -> bool:
    """Whether a query parameter name (raw, possibly percent-encoded) names a credential."""
    plain = unquote_plus(name).strip().lower()
    return plain in CREDENTIAL_NAMES or any(part in plain for part in CREDENTIAL_PARTS)


def _filter_query(query: str) -> str:
    pieces = _SEPARATOR.split(query)
    kept: list[str] = []
    for piece in pieces[::2]:
        if piece and not is_credential_name(piece.split("=", 1)[0]):
            kept.append(piece)
    return "&".join(kept)


def _authority_end(rest: str) -> int:
    ends = [found for found in (rest.find(mark) for mark in "/?#") if found != -1]
    return min(ends, default=len(rest))


def _split_authority(rest: str) -> tuple[str, str]:
    """(authority without user info, the rest from the first `/`, `?` or `#`)."""
    end = _authority_end(rest)
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        return authority.rsplit("@", 1)[1], tail
    path_end = _authority_end(tail[1:]) + 1 if tail.startswith("/") else 0
    if "@" in tail[:path_end]:
        # Malformed: an unencoded `/` before the `@` (a password holding `/`?). Keep nothing
        # that may be part of it: the host is what follows the path's last `@`.
        return _split_authority(tail[:path_end].rsplit("@", 1)[1] + tail[path_end:])
    return authority, tail


def redact_url(url: str) -> str:
    """`url` without user info, fragment or credential-like query parameters.

    A string with no `scheme://` (a file, a folder, a webcam index, `user:pw@host/path`) is
    read the same way from its start. Pure; never raises.
    """
    scheme_match = _SCHEME.match(url)
    scheme = scheme_match.group(0) if scheme_match else ""
    rest = url[len(scheme) :]
    if "@" not in rest and "?" not in rest and "#" not in rest:
        return url
    authority, tail = _split_authority(rest)
    tail = tail.split("#", 1)[0]
    path, _, query = tail.partition("?")
    query = _filter_query(query)
    return f"{scheme}{authority}{path}{'?' + query if query else ''}"
