"""`config/console.yaml`: the operator console's address, users, bearer tokens and sessions.

```yaml
console:
  host: 127.0.0.1
  port: 8300
  public_url: https://console.example.com   # where browsers reach it; notification links
  session_secret_env: RISKFLOW_CONSOLE_SECRET   # signs session cookies; unset: a random one
  users:                                        # passwords hashed: `riskflow console hash-password`
    - {username: demo, password_hash: "$argon2id$...", role: operator}
  tokens:                                       # bearer tokens, stored as SHA-256 hex
    - {name: wallboard, token_sha256: "9f86d0...", role: viewer}
```

Roles, each including the ones before it: `viewer` (sees everything), `operator` (also acts
on incidents), `admin`. Secrets never appear here in clear: passwords as argon2 hashes,
tokens as SHA-256 digests (tokens are random and long, so a fast hash is enough).
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """True when this role includes `needed` (admin > operator > viewer)."""
        return self.rank >= needed.rank


class ConsoleUser(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$", description="argon2 PHC string")
    role: Role = Role.VIEWER


class ConsoleToken(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the token")
    role: Role = Role.VIEWER


class ConsoleSettings(BaseModel):
    """Where the console listens, who may log in, and how its sessions behave."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8300, ge=0, lt=65536)
    session_secret_env: str = Field(
        default="RISKFLOW_CONSOLE_SECRET", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"
    )
    session_max_age_seconds: int = Field(default=12 * 3600, gt=0)
    secure_cookies: bool = Field(default=False, description="set behind HTTPS")
    users: list[ConsoleUser] = Field(default_factory=list)
    tokens: list[ConsoleToken] = Field(default_factory=list)
    poll_seconds: float = Field(
        default=0.5, gt=0, le=60, description="how often live tiles read camera:{id}:latest"
    )
    discover_seconds: float = Field(
        default=10.0, gt=0, description="how often cameras not in the configuration are looked up"
    )
    login_attempts: int = Field(default=5, gt=0, description="failed logins per user and minute")
    stream_queue_size: int = Field(
        default=1000,
        ge=1,
        description="live changes a browser's event stream may fall behind by, beyond one "
        "poll's worth (every camera and the incident list); one more and the stream is ended "
        "(its EventSource reconnects and reloads the page's state)",
    )
    stream_send_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a live event stream whose browser takes longer than this to take one "
        "event (it reads nothing) is disconnected",
    )
    public_url: str = Field(
        default="",
        max_length=2000,
        description="the console's URL as browsers reach it (behind a proxy: the proxy's), "
        "http(s), no query; notifications link to `{public_url}/incidents/{id}`. Empty: "
        "http://{host}:{port} (no link when the host is a wildcard address)",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"console.public_url must be an http(s) URL with a host: {value!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(
                f"console.public_url takes no query, fragment or credentials: {value!r}"
            )
        return value.rstrip("/")

    def link_base(self) -> str:
        """Where notification links point: `public_url`, else this host and port ("" for a
        wildcard host, which no browser can open)."""
        if self.public_url:
            return self.public_url
        if self.host in WILDCARD_HOSTS:
            return ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @model_validator(mode="after")
    def _unique(self) -> ConsoleSettings:
        names = [u.username for u in self.users]
        if len(names) != len(set(names)):
            raise ValueError(f"console usernames must be unique: {names}")
        tokens = [t.name for t in self.tokens]
        if len(tokens) != len(set(tokens)):
            raise ValueError(f"console token names must be unique: {tokens}")
        return self
