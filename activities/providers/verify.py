"""Check each configured key against its provider with one tiny request (`riskflow keys verify`)."""

from __future__ import annotations

from dataclasses import dataclass

from activities.providers import errors as provider_errors
from activities.providers.base import LLMClient
from riskflow import failure_kinds as E
from riskflow.keyconfig import KeyRing, KeysConfig


@dataclass(frozen=True)
class KeyVerdict:
    """One key's result: `verdict` is "valid", "valid (rate limited now)" or "FAILED";
    `answer` is the provider's HTTP status and code (never the secret)."""

    key_id: str
    verdict: str
    answer: str

    @property
    def failed(self) -> bool:
        return self.verdict == "FAILED"


async def verify_keys(
    keys: KeysConfig, ring: KeyRing, client: LLMClient, model: str
) -> list[KeyVerdict]:
    """Send one request per key with `model`; one verdict per key, in configuration order."""
    verdicts = []
    for key in keys.api_keys:
        response = await client.generate(
            model=model,
            messages=[{"role": "user", "content": 'Reply with the JSON {"ok": true}.'}],
            api_key=ring.secret(key.key_id),
            vision=False,
        )
        kind = provider_errors.classify(response)
        verdict = {E.OK: "valid", E.RATE_LIMITED: "valid (rate limited now)"}.get(kind, "FAILED")
        answer = f"HTTP {response.status_code} {response.code}".strip()
        verdicts.append(KeyVerdict(key.key_id, verdict, answer))
    return verdicts
