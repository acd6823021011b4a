"""Per-site capacity settings: the failover chain (`config/sites.yaml`, a site's `capacity`).

```yaml
sites:
  - id: plant-a
    cameras: ["1", "2"]
    capacity:
      failover:                         # tried in order; empty: any key, the task's models
        - {quota_groups: [account_a], vision_model: qwen-vl-max, max_wait_seconds: 30}
        - {quota_groups: [account_b], vision_model: qwen-vl-plus}
        - {text_only: true, text_model: qwen-turbo}   # detections only
      cameras:                          # a camera's own chain instead of the site's
        "2": [{quota_groups: [account_b]}]
      budget: {daily_tokens: 2000000, on_exhausted: fallback}   # riskflow.config.budget
```

An assessment moves to the next entry when every key of the entry's quota groups is disabled
(an invalid key, a refused account), or the earliest of them is free later than the entry's
`max_wait_seconds`. An answer from any entry after the first is marked degraded.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from riskflow.config.budget import SiteBudget

GROUP_PATTERN = r"^(key:)?[A-Za-z0-9_.-]{1,64}$"


class FailoverStep(BaseModel):
    """One entry of a failover chain: keys of `quota_groups` (api_keys.yaml names; a key
    without a group is `key:<key_id>`; empty: any key), asked for `vision_model` /
    `text_model` (None: the provider's or the task's), `text_only` (no snapshot sent), and
    the longest wait for a key, in seconds, before the next entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quota_groups: list[str] = Field(default_factory=list)
    vision_model: str | None = None
    text_model: str | None = None
    text_only: bool = False
    max_wait_seconds: float = Field(default=60.0, ge=0)

    def model_for(self, vision: bool) -> str:
        """This entry's model for the request ('' = not pinned here)."""
        return (self.vision_model if vision else self.text_model) or ""


class SiteCapacity(BaseModel):
    """A site's `capacity`: its failover chain, per-camera chains, and its budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failover: list[FailoverStep] = Field(default_factory=list)
    cameras: dict[str, list[FailoverStep]] = Field(default_factory=dict)
    budget: SiteBudget | None = Field(
        default=None, description="riskflow.config.budget; None: none"
    )

    def chain(self, camera_id: str) -> list[FailoverStep]:
        """The camera's chain: its own, else the site's (empty: no failover)."""
        return self.cameras.get(camera_id, self.failover)

    def over_budget_chain(self, camera_id: str) -> list[FailoverStep]:
        """The chain once the site's budget is exhausted (`on_exhausted: fallback`): the
        camera's chain's last entry, or a text-only call with the task's text model."""
        chain = self.chain(camera_id)
        return [chain[-1]] if chain else [FailoverStep(text_only=True)]
