"""Sites: where cameras are, who reads their alerts, in which language and time zone.

`config/sites.yaml`:

```yaml
sites:
  - id: plant-a
    name: Plant A, Suzhou
    language: zh-CN          # summaries and notifications in the operators' language
    timezone: Asia/Shanghai  # quiet hours, working hours and daily budgets use it
    cameras: ["1", "2"]      # camera ids of this site
```

A camera that no site lists belongs to the `default` site (language `en`, time zone UTC), so a
configuration without sites keeps working. Features that are set per site (incident escalation,
assessment context, budgets) add one field each to `SiteConfig`, defined in their own module.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from riskflow.config.capacity import SiteCapacity
from riskflow.config.context import DEFAULT_CONTEXT, SiteContext
from riskflow.config.incidents import IncidentConfig

DEFAULT_SITE_ID = "default"

Language = Literal["zh-CN", "en"]


class SiteConfig(BaseModel):
    """One site: `id` (letters, digits, `_.-`), display `name`, operators' `language`, IANA
    `timezone`, and the ids of its cameras."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = ""
    language: Language = "en"
    timezone: str = "UTC"
    cameras: list[str] = Field(default_factory=list)
    incidents: IncidentConfig | None = Field(
        default=None, description="this site's incident behaviour; unset: `incidents:`"
    )
    context: SiteContext = Field(
        default=DEFAULT_CONTEXT, description="context and rubric (riskflow.config.context)"
    )
    capacity: SiteCapacity = Field(
        default_factory=SiteCapacity, description="failover chain (riskflow.config.capacity)"
    )

    @model_validator(mode="after")
    def _context_cameras(self) -> SiteConfig:
        if self.id == DEFAULT_SITE_ID:
            return self
        unknown = sorted(set(self.context.cameras) - set(self.cameras))
        if unknown:
            raise ValueError(f"context.cameras names cameras not in this site: {unknown}")
        unknown = sorted(set(self.capacity.cameras) - set(self.cameras))
        if unknown:
            raise ValueError(f"capacity.cameras names cameras not in this site: {unknown}")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def display_name(self) -> str:
        return self.name or self.id


DEFAULT_SITE = SiteConfig(id=DEFAULT_SITE_ID)


def check_sites(sites: list[SiteConfig]) -> list[SiteConfig]:
    """Site ids are unique and a camera belongs to one site at most; ValueError says which."""
    ids = [s.id for s in sites]
    if len(ids) != len(set(ids)):
        raise ValueError(f"site ids must be unique: {ids}")
    owner: dict[str, str] = {}
    for site in sites:
        for camera in site.cameras:
            if camera in owner:
                raise ValueError(f"camera {camera!r} is in sites {owner[camera]!r} and {site.id!r}")
            owner[camera] = site.id
    return sites


def site_timezone(sites: list[SiteConfig], site_id: str) -> str:
    """The IANA time zone of site `site_id` (UTC for an unknown site, as the default site)."""
    return next((s.timezone for s in sites if s.id == site_id), DEFAULT_SITE.timezone)


def site_of(sites: list[SiteConfig], camera_id: str) -> SiteConfig:
    """The site that lists `camera_id`, else the site with id `default` if configured, else
    `DEFAULT_SITE`."""
    fallback = DEFAULT_SITE
    for site in sites:
        if camera_id in site.cameras:
            return site
        if site.id == DEFAULT_SITE_ID:
            fallback = site
    return fallback
