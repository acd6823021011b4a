"""What `riskflow status` reads in the bridge's /metrics beyond "it answers": whether it reads
any partition of detection-results, and for how long it has read none (workers.bridge.partitions
writes these figures)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from riskflow.names import DETECTION_TOPIC

ASSIGNED = "riskflow_bridge_assigned_partitions"
TOPIC_PARTITIONS = "riskflow_bridge_topic_partitions"
UNASSIGNED_SECONDS = "riskflow_bridge_unassigned_seconds"
PERIODS = "riskflow_bridge_unassigned_periods_total"
PERIOD_SECONDS = "riskflow_bridge_unassigned_period_seconds_total"


@dataclass(frozen=True)
class BridgeReading:
    """The bridge's partitions as its metrics say: how many it reads of how many the topic has,
    the current period without any (seconds; 0 while it reads one), and the periods without any
    after it first had some (their count and seconds, the current one included)."""

    assigned: int
    topic_partitions: int
    unassigned_seconds: float
    periods: int
    period_seconds: float

    @classmethod
    def parse(cls, metrics_text: str) -> BridgeReading | None:
        """From a /metrics page; None when it has no such figures (metrics of another kind)."""
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(metrics_text):
            for sample in family.samples:
                if not sample.labels:
                    values[sample.name] = sample.value
        if ASSIGNED not in values:
            return None
        return cls(
            assigned=int(values[ASSIGNED]),
            topic_partitions=int(values.get(TOPIC_PARTITIONS, 0)),
            unassigned_seconds=values.get(UNASSIGNED_SECONDS, 0.0),
            periods=int(values.get(PERIODS, 0)),
            period_seconds=values.get(PERIOD_SECONDS, 0.0),
        )

    def problem(self) -> str:
        """ "" while it reads a partition; else what `status` reports (not healthy)."""
        if self.assigned:
            return ""
        of = f"the {self.topic_partitions}" if self.topic_partitions else "any (none known)"
        return (
            f"no partitions: has read none of {of} of {DETECTION_TOPIC} for "
            f"{self.unassigned_seconds:.1f} s; detections are not reaching Temporal"
        )

    def note(self) -> str:
        """The periods it read none, once it had some ("" when there were none)."""
        if not self.periods:
            return ""
        times = "period" if self.periods == 1 else "periods"
        return (
            f"read no partition for {self.period_seconds:.1f} s in {self.periods} {times} "
            f"since it started (now: {self.assigned} of {self.topic_partitions})"
        )
