"""Camera tiles and alert lists built from Redis, filtered and paged (shared by the pages and
the JSON API)."""

from __future__ import annotations

from dataclasses import dataclass

from console.data import parse_assessment, read_alerts, read_latest, view_of
from console.incidents import open_incident_counts
from console.models import AssessmentView, CameraView, Page
from riskflow.config.settings import Settings
from riskflow.contracts.assessment import Assessment
from riskflow.infra.redis import RedisClient
from riskflow.levels import RiskLevel
from riskflow.names import camera_alerts_key


@dataclass(frozen=True)
class Filters:
    site: str | None = None
    camera: str | None = None
    min_level: RiskLevel | None = None
    offset: int = 0
    limit: int = 100


def _at_least(assessment: Assessment | None, level: RiskLevel | None) -> bool:
    if level is None:
        return True
    return bool(assessment and assessment.risk_level and assessment.risk_level.rank >= level.rank)


def camera_view(
    settings: Settings, camera: str, latest: Assessment | None, open_: int
) -> CameraView:
    site = settings.site(camera)
    return CameraView(
        camera_id=camera,
        site_id=site.id,
        site_name=site.display_name,
        latest=view_of(latest) if latest else None,
        open_incidents=open_,
    )


async def camera_page(
    settings: Settings, redis: RedisClient, cameras: list[str], filters: Filters
) -> Page[CameraView]:
    """Cameras in site order (the configuration's), then by id; filtered by site and by the
    latest level (`min_level`: at least this level)."""
    site_rank = {site.id: i for i, site in enumerate(settings.sites)}
    site_of = {c: settings.site(c).id for c in cameras}
    chosen = [
        c
        for c in cameras
        if (filters.site is None or site_of[c] == filters.site)
        and (filters.camera is None or c == filters.camera)
    ]
    chosen.sort(key=lambda c: (site_rank.get(site_of[c], len(site_rank)), c))
    latest = await read_latest(redis, chosen)
    if filters.min_level is not None:
        chosen = [c for c in chosen if _at_least(latest[c], filters.min_level)]
    shown = chosen[filters.offset : filters.offset + filters.limit]
    counts = await open_incident_counts(redis, shown)
    items = [camera_view(settings, c, latest[c], counts.get(c, 0)) for c in shown]
    return Page[CameraView](
        items=items, total=len(chosen), offset=filters.offset, limit=filters.limit
    )


async def alert_page(
    settings: Settings, redis: RedisClient, cameras: list[str], filters: Filters
) -> Page[AssessmentView]:
    """Alerts (`alerts:{id}`) of the chosen cameras, newest first, filtered and paged."""
    chosen = [
        c
        for c in cameras
        if (filters.camera is None or c == filters.camera)
        and (filters.site is None or settings.site(c).id == filters.site)
    ]
    depth = settings.aggregate.alerts_max_len
    found: list[Assessment] = []
    if len(chosen) == 1:
        found = await read_alerts(redis, chosen[0], depth)
    elif chosen:
        async with redis.pipeline(transaction=False) as pipe:
            for camera in chosen:
                pipe.lrange(camera_alerts_key(camera), 0, depth - 1)
            rows = await pipe.execute()
        for camera, entries in zip(chosen, rows, strict=True):
            for raw in entries:
                parsed = parse_assessment(raw, camera_alerts_key(camera))
                if parsed is not None:
                    found.append(parsed)
    kept = [a for a in found if _at_least(a, filters.min_level)]
    kept.sort(key=lambda a: (a.captured_ms, a.assessment_id), reverse=True)
    shown = kept[filters.offset : filters.offset + filters.limit]
    return Page[AssessmentView](
        items=[view_of(a) for a in shown],
        total=len(kept),
        offset=filters.offset,
        limit=filters.limit,
    )
