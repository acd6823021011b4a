"""Generate `dashboards/riskflow.json` (run after changing panels; a test checks it is current).

python deploy/grafana/build_dashboard.py
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "prometheus"}


def quantile(q: float, histogram: str, by: str = "") -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket[5m])))"


def share(used: str, limit: str, by: str) -> str:
    """Use over limit for the 60 s window; max() because every worker exports the pool."""
    window = '{window="60s"}'
    return f"max by ({by}) ({used}{window}) / max by ({by}) ({limit}{window})"


STARTED = 'riskflow_bridge_messages_total{outcome="started"}'
DEBOUNCED = 'riskflow_bridge_messages_total{outcome="duplicate"}'

# (title, unit, [(expr, legend)]), laid out two per row, in the order of the flow.
# fmt: off
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Edge frames/s by stage", "ops", [
        ("sum by (camera, stage) (rate(riskflow_edge_frames_total[1m]))", "{{camera}} {{stage}}"),
    ]),
    ("Edge inference p95", "s", [
        (quantile(0.95, "riskflow_edge_inference_seconds", "camera"), "{{camera}}"),
    ]),
    ("Bridge messages/s by outcome", "ops", [
        ("sum by (outcome) (rate(riskflow_bridge_messages_total[1m]))", "{{outcome}}"),
        ("sum(rate(riskflow_bridge_uncommitted_batches_total[5m]))", "batches read again"),
    ]),
    ("Significant events/s by camera", "ops", [
        (f"sum by (camera) (rate({STARTED}[5m]))", "{{camera}} started"),
        (f"sum by (camera) (rate({DEBOUNCED}[5m]))", "{{camera}} debounced"),
    ]),
    ("Dead letters/s by reason", "ops", [
        ("sum by (reason) (rate(riskflow_dead_letters_total[5m]))", "{{reason}}"),
    ]),
    ("Consumer lag", "short", [
        ("max by (partition) (riskflow_bridge_consumer_lag)", "partition {{partition}}"),
    ]),
    ("Partitions read by the bridges", "short", [
        ("sum(riskflow_bridge_assigned_partitions)", "read"),
        ("max(riskflow_bridge_topic_partitions)", "in the topic"),
    ]),
    ("End to end, capture to Redis", "s", [
        (quantile(q, "riskflow_end_to_end_seconds"), f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)
    ]),
    ("Stage latency p95", "s", [
        (quantile(0.95, "riskflow_activity_seconds", "activity"), "{{activity}}"),
        (quantile(0.95, "riskflow_bridge_start_seconds"), "bridge start"),
        (quantile(0.95, "riskflow_edge_publish_seconds"), "edge publish"),
    ]),
    ("Assessments/s by risk level", "ops", [
        ('sum by (risk_level) (rate(riskflow_assessments_total{status="assessed"}[5m]))',
         "{{risk_level}}"),
        ('sum(rate(riskflow_assessments_total{status="failed"}[5m]))', "failed"),
    ]),
    ("LLM requests/s by outcome", "ops", [
        ("sum by (outcome) (rate(riskflow_llm_requests_total[5m]))", "{{outcome}}"),
    ]),
    ("Key use, share of RPM limit", "percentunit", [
        (share("riskflow_keypool_used", "riskflow_keypool_limit", "key_id"), "{{key_id}}"),
    ]),
    ("Quota group use, share of RPM limit", "percentunit", [
        (share("riskflow_keypool_group_used", "riskflow_keypool_group_limit", "quota_group"),
         "{{quota_group}}"),
    ]),
    ("Leases in flight and cooldown", "short", [
        ("max by (key_id) (riskflow_keypool_in_flight)", "{{key_id}} in flight"),
        ("max by (key_id) (riskflow_keypool_cooldown_remaining_seconds)", "{{key_id}} cooldown s"),
    ]),
    ("429s and key waits", "ops", [
        ("max by (key_id) (rate(riskflow_keypool_rate_limited_total[5m]))", "{{key_id}} 429/s"),
        ("sum by (reason) (rate(riskflow_keypool_waits_total[5m]))", "wait: {{reason}}"),
    ]),
    ("Temporal: workflows completed/s", "ops", [
        ("sum(rate(temporal_workflow_completed_total[5m]))", "completed"),
    ]),
    ("Keys enabled", "short", [
        ("max by (key_id) (riskflow_keypool_enabled)", "{{key_id}}"),
    ]),
]
# fmt: on


def panel(index: int, title: str, unit: str, targets: list[tuple[str, str]]) -> dict[str, object]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, object]:
    return {
        "uid": "riskflow",
        "title": "riskflow: cameras to risk assessments",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "tags": ["riskflow"],
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "dashboards" / "riskflow.json"
    out.write_text(render())
    print(f"wrote {out}")
