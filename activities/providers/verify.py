"""Check each configured key and model against the provider with the exact request shape the
worker sends (JSON mode; the vision endpoint with an image for the vision model), one tiny
request each (`riskflow keys verify`)."""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from activities.providers import errors as provider_errors
from activities.providers.base import LLMClient
from activities.providers.route import KeyRoutes, Route
from riskflow.config.keys import KeyRing, KeysConfig
from riskflow.contracts import failures as E
from riskflow.llm_text.prompt import SYSTEM_PROMPT

_USER = 'Camera check: nothing in view. Respond in JSON with risk_level "none".'


@dataclass(frozen=True)
class KeyVerdict:
    """One key and model's result: `verdict` is "valid", "valid (rate limited now)" or
    "FAILED"; `answer` is the provider's HTTP status, code and what it means (never the
    secret)."""

    key_id: str
    model: str
    verdict: str
    answer: str

    @property
    def failed(self) -> bool:
        return self.verdict == "FAILED"


def _png(side: int = 32) -> str:
    """A grey `side` x `side` PNG as a data URI (vision models refuse images under 10 px)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * side for _ in range(side)))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
    return "data:image/png;base64," + base64.b64encode(png + chunk(b"IEND", b"")).decode()


def _messages(vision: bool) -> list[dict[str, Any]]:
    user: Any = [{"image": _png()}, {"text": _USER}] if vision else _USER
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


async def verify_keys(
    keys: KeysConfig,
    ring: KeyRing,
    client: LLMClient | KeyRoutes,
    text_model: str,
    vision_model: str,
) -> list[KeyVerdict]:
    """One request per key and model (the text model on the text endpoint, the vision model on
    the vision endpoint, both in JSON mode), each key on its own provider with that provider's
    models when `client` is the keys' routes; verdicts in configuration order."""
    routes = client if isinstance(client, KeyRoutes) else KeyRoutes({}, Route("dashscope", client))
    verdicts = []
    for key in keys.api_keys:
        route = routes.route(key.key_id)
        for model, vision in ((text_model, False), (vision_model, True)):
            model = route.model(vision, model)
            response = await route.client.generate(
                model=model,
                messages=_messages(vision),
                api_key=ring.secret(key.key_id),
                vision=vision,
            )
            kind = provider_errors.classify(response).kind
            verdict = {E.OK: "valid", E.RATE_LIMITED: "valid (rate limited now)"}.get(
                kind, "FAILED"
            )
            answer = f"HTTP {response.status_code} {response.code}".strip()
            if verdict == "FAILED":
                answer = f"{answer} ({kind}): {response.message}"[:300]
            verdicts.append(KeyVerdict(key.key_id, model, verdict, answer))
    return verdicts
