"""Replay (shadow evaluation): candidate configurations and the typed inputs and outputs of
the replay workflow. `riskflow replay` compares candidates on recorded events without alerting
or touching `camera:*` / `alerts:*`; its costs come from the top-level `prices:`
(`riskflow.config.prices`).

`config/riskflow.yaml`:

```yaml
replay:
  concurrency: 4                 # assessments in flight at once (the key pool still decides)
```

A candidates file (YAML): `candidates: [{name: current}, {name: new, prompt: v2, model: qwen-max,
rubric: {...}, instructions: ..., language: zh-CN}]`; unset fields keep the live configuration.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskflow.config.context import PromptVersion, Rubric
from riskflow.config.sites import Language

Provider = Literal["dashscope"]


class ReplaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(default=4, gt=0, le=256)
    snapshot_ttl_seconds: int = Field(
        default=3600, gt=0, description="recorded snapshots staged in Redis for a replay"
    )

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and ({"prices", "currency"} & data.keys()):
            raise ValueError(
                "replay.prices and replay.currency moved to the top-level `prices:` "
                "({currency: CNY, models: {qwen-plus: {input_per_million: ..., "
                "output_per_million: ...}}}), shared with site budgets"
            )
        return data


class Candidate(BaseModel):
    """One configuration to replay: unset fields keep the live configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    prompt: PromptVersion = "v2"
    provider: Provider = "dashscope"
    model: str | None = Field(default=None, description="text model")
    vision_model: str | None = None
    language: Language | None = None
    rubric: Rubric | None = None
    instructions: str | None = Field(default=None, description="replaces the site's and camera's")


class CandidatesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    candidates: list[Candidate] = Field(min_length=1)
