"""The key pool's state as Prometheus series, refreshed from Redis in the background.

Every worker exports the same cluster-wide view (the pool lives in Redis), so dashboards
should take max() across instances, not sum().
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from activities.keypool import KeyPool, KeyState
from riskflow.config.keys import KeysConfig

logger = logging.getLogger(__name__)

_COUNTERS = {
    "granted": "riskflow_keypool_leases",
    "calls": "riskflow_keypool_calls",
    "rate_limited": "riskflow_keypool_rate_limited",
    "errors": "riskflow_keypool_errors",
    "invalid": "riskflow_keypool_invalid",
}


class KeyPoolCollector(Collector):
    def __init__(self, config: KeysConfig) -> None:
        self._config = config
        self._states: list[KeyState] = []
        self._groups: dict[str, tuple[int, int]] = {}
        self._up = 0

    def update(self, states: list[KeyState], groups: dict[str, tuple[int, int]], up: bool) -> None:
        if up:
            self._states, self._groups = states, groups
        self._up = int(up)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "riskflow_keypool_up", "1 when the pool's Redis answered the last read"
        )
        up.add_metric([], self._up)
        yield up
        labels = ["key_id", "quota_group"]
        counters = {
            field: CounterMetricFamily(name, f"Key pool {field} per key", labels=labels)
            for field, name in _COUNTERS.items()
        }
        cooldown = CounterMetricFamily(
            "riskflow_keypool_cooldown_seconds", "Cooldown imposed per key", labels=labels
        )
        gauges = {
            "in_flight": GaugeMetricFamily(
                "riskflow_keypool_in_flight", "Leases held", labels=labels
            ),
            "cooling": GaugeMetricFamily(
                "riskflow_keypool_cooldown_remaining_seconds", "Cooldown left", labels=labels
            ),
            "enabled": GaugeMetricFamily(
                "riskflow_keypool_enabled", "1 if the key is in rotation", labels=labels
            ),
        }
        used = GaugeMetricFamily(
            "riskflow_keypool_used", "Calls in the window", labels=[*labels, "window"]
        )
        limit = GaugeMetricFamily(
            "riskflow_keypool_limit", "The key's limit", labels=[*labels, "window"]
        )
        for s in self._states:
            key = [s.key_id, s.quota_group or "-"]
            for field in _COUNTERS:
                counters[field].add_metric(key, s.counters.get(field, 0))
            cooldown.add_metric(key, s.counters.get("cooldown_ms", 0) / 1000)
            gauges["in_flight"].add_metric(key, s.in_flight)
            gauges["cooling"].add_metric(key, s.cooldown_remaining_ms / 1000)
            gauges["enabled"].add_metric(key, int(s.enabled))
            used.add_metric([*key, "1s"], s.used_last_second)
            used.add_metric([*key, "60s"], s.used_last_minute)
            limit.add_metric([*key, "1s"], s.qps_limit)
            limit.add_metric([*key, "60s"], s.rpm_limit)
        group_used = GaugeMetricFamily(
            "riskflow_keypool_group_used",
            "Group calls in the window",
            labels=["quota_group", "window"],
        )
        group_limit = GaugeMetricFamily(
            "riskflow_keypool_group_limit", "Group limit", labels=["quota_group", "window"]
        )
        for name, (last_second, last_minute) in self._groups.items():
            group = self._config.quota_groups[name]
            group_used.add_metric([name, "1s"], last_second)
            group_used.add_metric([name, "60s"], last_minute)
            group_limit.add_metric([name, "1s"], group.qps_limit)
            group_limit.add_metric([name, "60s"], group.rpm_limit)
        yield from counters.values()
        yield cooldown
        yield from gauges.values()
        yield from (used, limit, group_used, group_limit)


async def refresh_forever(pool: KeyPool, collector: KeyPoolCollector, every: float) -> None:
    groups = list(collector._config.quota_groups)
    while True:
        try:
            collector.update(await pool.snapshot(), await pool.group_usage(groups), up=True)
        except Exception as exc:  # Redis down or odd data: report it, never stop the worker
            logger.warning("key pool metrics: %s: %s", type(exc).__name__, exc)
            collector.update([], {}, up=False)
        await asyncio.sleep(every)


def register(config: KeysConfig) -> KeyPoolCollector:
    collector = KeyPoolCollector(config)
    REGISTRY.register(collector)
    return collector
