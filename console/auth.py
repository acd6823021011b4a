"""Who is asking: session cookies (local users, argon2 hashes) or bearer tokens (SHA-256
digests), roles, CSRF tokens and login throttling.

Sessions are Starlette's signed cookies (itsdangerous; HttpOnly, SameSite=strict) holding the
username and a CSRF token; the role is read from the configuration on every request, so a
user removed from it loses access at once. State-changing requests with a session must carry
the CSRF token (form field `csrf_token` or header `X-CSRF-Token`); bearer-token requests carry
no ambient credential and need none.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, status

from riskflow.config.console import ConsoleSettings, Role

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_HASHER = PasswordHasher()
# Verified when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id PHC string (`$argon2id$v=19$...`) for `console.users[].password_hash`."""
    return _HASHER.hash(password)


def hash_token(token: str) -> str:
    """The hex SHA-256 of a bearer token, for `console.tokens[].token_sha256`."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    via: Literal["session", "token"]


class LoginThrottled(Exception):
    """Too many failed logins for one username; `retry_after_seconds` until the next try."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class Authenticator:
    """Checks passwords and tokens against the configuration; throttles failed logins per
    username (`login_attempts` a minute, in this process)."""

    WINDOW_SECONDS = 60.0
    MAX_TRACKED = 10_000  # usernames with recent failures kept (a flood of names stays bounded)

    def __init__(self, settings: ConsoleSettings) -> None:
        self._users = {u.username: u for u in settings.users}
        self._tokens = list(settings.tokens)
        self._limit = settings.login_attempts
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def role_of(self, username: str) -> Role | None:
        user = self._users.get(username)
        return user.role if user else None

    def login(self, username: str, password: str) -> Principal | None:
        """The principal, or None for a wrong name or password. Raises LoginThrottled."""
        now = time.monotonic()
        failures = self._failures[username[:64]]
        while failures and failures[0] < now - self.WINDOW_SECONDS:
            failures.popleft()
        if len(failures) >= self._limit:
            raise LoginThrottled(int(failures[0] + self.WINDOW_SECONDS - now) + 1)
        user = self._users.get(username)
        try:
            _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            user = None
        if user is None:
            failures.append(now)
            self._forget_stale(now)
            return None
        failures.clear()
        return Principal(user.username, user.role, "session")

    def _forget_stale(self, now: float) -> None:
        if len(self._failures) <= self.MAX_TRACKED:
            return
        cutoff = now - self.WINDOW_SECONDS
        for name in [n for n, times in self._failures.items() if not times or times[-1] < cutoff]:
            del self._failures[name]
        while len(self._failures) > self.MAX_TRACKED:  # all recent: drop the oldest names
            del self._failures[next(iter(self._failures))]

    def token(self, token: str) -> Principal | None:
        digest = hash_token(token)
        for entry in self._tokens:
            if hmac.compare_digest(entry.token_sha256, digest):
                return Principal(entry.name, entry.role, "token")
        return None


def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def principal_of(request: Request) -> Principal | None:
    """The caller from its bearer token or session cookie, or None."""
    auth = authenticator(request)
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return auth.token(credential.strip())
    username = request.session.get("user")
    if not isinstance(username, str):
        return None
    role = auth.role_of(username)
    return Principal(username, role, "session") if role else None


def require_login(request: Request) -> Principal:
    """Dependency: the caller, or 401."""
    principal = principal_of(request)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "log in first (session cookie) or send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.principal = principal
    return principal


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """Dependency for state-changing requests: 403 unless a session request carries its
    CSRF token (bearer-token requests are exempt: browsers never send them on their own)."""
    principal = principal_of(request)
    if principal is not None and principal.via == "token":
        return
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(expected, sent):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token: reload the page and retry"
        )


def require_role(needed: Role) -> Callable[[Request], Principal]:
    """Dependency factory: the caller if its role includes `needed`, else 403 (401 if none)."""

    def check(request: Request) -> Principal:
        principal = require_login(request)
        if not principal.role.allows(needed):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {principal.role.value!r} may not do this; it needs {needed.value!r}",
            )
        return principal

    return check
