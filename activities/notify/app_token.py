"""An app's access token (WeCom `access_token`, Feishu `tenant_access_token`, DingTalk
`accessToken`), kept per process and per app.

Each vendor hands out a token valid for about two hours (`expires_in` / `expire` / `expireIn`,
seconds) and may end it early (a secret reset, another instance of the app asking too often).
`AccessToken` fetches one for one caller at a time, keeps it until `RENEW_BEFORE_SECONDS`
before its end (at least `MIN_TOKEN_SECONDS`), and `using` makes a call with it once more with
a fresh token when the vendor answers that the token was refused (`errors.TokenRefused`).
`fetch_json` is the token request itself: its failures are the channel's, never the
secret's (aiohttp's messages quote URLs, which may hold the secret, so they are not kept).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from activities.notify import errors
from activities.notify.errors import Refused, TokenRefused
from activities.notify.http import RETRY_AFTER_HEADERS, timeouts
from riskflow.contracts.notifications import NOTIFY_RATE_LIMITED

RENEW_BEFORE_SECONDS, MIN_TOKEN_SECONDS = 300.0, 60.0
T = TypeVar("T")


class AccessToken:
    """`fetch()` -> (token, lifetime in seconds); `clock` in seconds."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[str, float]]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        async with self._lock:
            now = self._clock()
            if self._token is not None and self._token[1] > now:
                return self._token[0]
            token, lifetime = await self._fetch()
            keep = max(MIN_TOKEN_SECONDS, lifetime - RENEW_BEFORE_SECONDS)
            self._token = (token, now + keep)
            return token

    def drop(self, token: str) -> None:
        """Forget `token` (refused by the vendor); a newer one is kept."""
        if self._token is not None and self._token[0] == token:
            self._token = None

    async def using(self, call: Callable[[str], Awaitable[T]]) -> T:
        """`call(token)`, made once more with a new token when the first is refused."""
        for attempt in range(2):
            token = await self.get()
            try:
                return await call(token)
            except TokenRefused:
                self.drop(token)
                if attempt:
                    raise
        raise AssertionError("unreachable")


async def fetch_json(
    session: aiohttp.ClientSession,
    what: str,
    method: str,
    url: str,
    timeout_seconds: float,
    classify: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> Any:
    """The JSON answer of a token request (`what` names it in errors); `Refused` when it
    cannot be made, is answered with an error status, or is not JSON. An error status with
    a JSON body is first read by `classify` (the vendor's check: a rate limit stays one, with
    the wait the vendor names in `Retry-After` or `x-ogw-ratelimit-reset`)."""
    try:
        async with session.request(
            method, url, timeout=timeouts(timeout_seconds), **kwargs
        ) as response:
            status, text = response.status, await response.text(errors="replace")
            wait = next(
                (response.headers[h] for h in RETRY_AFTER_HEADERS if h in response.headers), None
            )
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise errors.failed(f"{what}: {type(exc).__name__}") from None
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        answer = None
    if not 200 <= status < 300:
        if classify is not None and isinstance(answer, dict) and status != 429:
            try:
                classify(answer)
            except Refused as exc:
                if exc.kind == NOTIFY_RATE_LIMITED:
                    raise errors.rate_limited(
                        str(exc), errors.seconds(wait) or exc.retry_after_seconds
                    ) from None
                raise
        raise errors.http_status(what, status, text, wait)
    if answer is None:
        raise errors.failed(f"{what} answered non-JSON: {text[:200]}")
    return answer


def lifetime(value: Any, default: float = 7200.0) -> float:
    """A token's lifetime as the vendor gave it (seconds), else `default`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return default
    return float(value)
