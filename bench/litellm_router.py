"""The anchor for bench/key_pool: LiteLLM Router (PyPI `litellm`), usage-based routing with its
Redis (`routing_strategy="usage-based-routing-v2"`, https://docs.litellm.ai/docs/routing), one
deployment per key on the local server's OpenAI-compatible route, its own retries off.

LiteLLM limits deployments per minute (`rpm`, `tpm`); a key's per-second limit has no field, so
each deployment gets rpm = min(rpm, 60 * qps), and a quota group has no counterpart.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from urllib.parse import urlparse

from riskflow.config.keys import KeyRing, KeysConfig

MODEL = "qwen"


def model_list(config: KeysConfig, ring: KeyRing, api_base: str) -> list[dict[str, Any]]:
    return [
        {
            "model_name": MODEL,
            "litellm_params": {
                "model": "openai/qwen-plus",
                "api_key": ring.secret(key.key_id),
                "api_base": api_base,
                "rpm": min(key.rpm_limit, 60 * key.qps_limit),
                "max_retries": 0,
            },
            "model_info": {"id": key.key_id},
        }
        for key in config.api_keys
    ]


def router(config: KeysConfig, ring: KeyRing, api_base: str, redis_url: str) -> Any:
    """A Router sharing its usage counts through `redis_url` with the other processes."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch from the internet
    from litellm import Router  # imported here: seconds of import, only where it is measured

    redis = urlparse(redis_url)
    return Router(
        model_list=model_list(config, ring, api_base),
        routing_strategy="usage-based-routing-v2",
        redis_host=redis.hostname,
        redis_port=redis.port,
        num_retries=0,
        timeout=30,
    )


async def caller(
    route: Any, messages: list[dict[str, Any]], until: float, sent: list[float]
) -> None:
    """Call through the Router until `until` (monotonic seconds); `sent` gets each send's
    wall-clock time. A refusal by the router itself (no deployment free) is not a send."""
    while time.monotonic() < until:
        started = time.time()
        try:
            await route.acompletion(
                model=MODEL, messages=messages, response_format={"type": "json_object"}
            )
        except Exception as exc:  # the provider's 429s come back as exceptions too
            if _refused_by_router(exc):
                await asyncio.sleep(max(0.0, min(0.05, until - time.monotonic())))
                continue
        sent.append(started)


def _refused_by_router(exc: Exception) -> bool:
    """The Router had no deployment under its limits: nothing was sent."""
    return "No deployments available" in str(exc) or "RouterRateLimitError" in type(exc).__name__
