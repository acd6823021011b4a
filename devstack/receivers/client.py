"""Read what the local receiver got (the demo prints it; tests and benchmarks poll it)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp


async def notifications(receiver: str, channel: str | None = None) -> list[dict[str, Any]]:
    """`GET {receiver}/admin/notifications`, oldest first; [] when the receiver is not up."""
    params = {"channel": channel} if channel else {}
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with (
            aiohttp.ClientSession(trust_env=False, timeout=timeout) as session,
            session.get(f"{receiver}/admin/notifications", params=params) as response,
        ):
            found: list[dict[str, Any]] = await response.json()
            return found
    except (aiohttp.ClientError, TimeoutError):
        return []


def describe(notification: dict[str, Any]) -> str:
    """One line: time, channel (vendor), title."""
    at = time.strftime("%H:%M:%S", time.localtime(notification.get("received_at", 0)))
    channel, vendor = notification.get("channel", "?"), notification.get("vendor", "?")
    return f"{at}  {channel} ({vendor}): {notification.get('title', '')}"
