"""Reading what the console shows from Redis: latest assessments, alerts, snapshots, the pool.

Redis keys (`riskflow.names`): `camera:{id}:latest` (JSON `Assessment`), `alerts:{id}` (a
list of JSON assessments, newest first), snapshots `snapshot:{camera}:{ms}:{frame}` (JPEG
bytes, written by the detection edge and referred to by an assessment's
`provenance.image_ref` as `redis:<key>`). A value that does not parse is logged and shown as
missing, never an error page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from pydantic import ValidationError

from activities.keypool import KeyPool
from console.models import AssessmentView, KeyPoolView, KeyView, QuotaGroupView
from riskflow.config.keys import KeysConfig
from riskflow.contracts.assessment import Assessment
from riskflow.infra.redis import RedisClient
from riskflow.names import camera_alerts_key, camera_latest_key, is_camera_snapshot_key

logger = logging.getLogger(__name__)

LATEST_PATTERN = camera_latest_key("*")
MAX_DISCOVERED = 5000


def snapshot_key(assessment: Assessment) -> str | None:
    """The Redis key of the assessment's own camera's snapshot, or None (a URL snapshot, or a
    reference to another camera's key, is never served)."""
    ref = assessment.provenance.image_ref or ""
    key = ref.removeprefix("redis:")
    if ref.startswith("redis:") and is_camera_snapshot_key(assessment.camera_id, key):
        return key
    return None


def view_of(assessment: Assessment) -> AssessmentView:
    return AssessmentView(
        **assessment.model_dump(
            include={
                "assessment_id",
                "camera_id",
                "situation",
                "status",
                "risk_level",
                "risk_score",
                "summary",
                "hazards",
                "recommended_actions",
                "captured_at",
                "assessed_at",
                "key_id",
            }
        ),
        has_snapshot=snapshot_key(assessment) is not None,
    )


def parse_assessment(raw: bytes | str | None, where: str) -> Assessment | None:
    if raw is None:
        return None
    try:
        return Assessment.model_validate_json(raw)
    except ValidationError as exc:
        logger.warning("%s does not hold an assessment: %s", where, exc.errors()[:1])
        return None


async def read_latest(redis: RedisClient, camera_ids: list[str]) -> dict[str, Assessment | None]:
    """{camera_id: its latest assessment or None}, one pipelined round trip."""
    if not camera_ids:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for camera in camera_ids:
            pipe.get(camera_latest_key(camera))
        rows = await pipe.execute()
    return {
        camera: parse_assessment(raw, camera_latest_key(camera))
        for camera, raw in zip(camera_ids, rows, strict=True)
    }


async def discover_cameras(redis: RedisClient) -> set[str]:
    """Camera ids that have a `camera:{id}:latest` key (at most MAX_DISCOVERED)."""
    found: set[str] = set()
    async for key in redis.scan_iter(match=LATEST_PATTERN, count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        found.add(name.removeprefix("camera:").removesuffix(":latest"))
        if len(found) >= MAX_DISCOVERED:
            break
    return found


async def read_alerts(redis: RedisClient, camera_id: str, limit: int) -> list[Assessment]:
    """Up to `limit` alerts of one camera, newest first."""
    rows = await redis.lrange(camera_alerts_key(camera_id), 0, limit - 1)
    parsed = (parse_assessment(row, camera_alerts_key(camera_id)) for row in rows)
    return [a for a in parsed if a is not None]


async def read_snapshot(redis: RedisClient, camera_id: str) -> bytes | None:
    """The JPEG of the camera's latest assessment, if it is still in Redis."""
    latest = parse_assessment(await redis.get(camera_latest_key(camera_id)), camera_id)
    key = snapshot_key(latest) if latest else None
    if key is None:
        return None
    data = await redis.get(key)
    return data if isinstance(data, bytes) else None


async def read_key_pool(redis: RedisClient, keys: KeysConfig) -> KeyPoolView:
    """Every key's state and every quota group's use (`activities.keypool`)."""
    pool = KeyPool(redis, keys.scheduler)
    states = await pool.snapshot()
    groups = sorted({s.quota_group for s in states if s.quota_group} | set(keys.quota_groups))
    usage = await pool.group_usage(groups) if groups else {}
    return KeyPoolView(
        keys=[
            KeyView(
                key_id=s.key_id,
                quota_group=s.quota_group,
                enabled=s.enabled,
                disabled_reason=s.disabled_reason,
                qps_limit=s.qps_limit,
                rpm_limit=s.rpm_limit,
                max_concurrency=s.max_concurrency,
                used_last_second=s.used_last_second,
                used_last_minute=s.used_last_minute,
                in_flight=s.in_flight,
                cooldown_remaining_seconds=s.cooldown_remaining_ms / 1000,
                strikes=s.strikes,
            )
            for s in states
        ],
        groups=[_group(name, keys, usage.get(name, (0, 0))) for name in groups],
    )


def _group(name: str, keys: KeysConfig, usage: tuple[int, int]) -> QuotaGroupView:
    limits = keys.quota_groups.get(name)
    return QuotaGroupView(
        name=name,
        qps_limit=limits.qps_limit if limits else 0,
        rpm_limit=limits.rpm_limit if limits else 0,
        used_last_second=usage[0],
        used_last_minute=usage[1],
    )


def age_seconds(moment: datetime, now: datetime) -> float:
    return max(0.0, (now - moment).total_seconds())


def newest_first(items: Iterable[Assessment]) -> list[Assessment]:
    return sorted(items, key=lambda a: a.captured_ms, reverse=True)
