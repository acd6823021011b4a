"""The replay report: per candidate, agreement with the expected levels and the operators'
labels, a confusion table, refusals and failures, tokens, cost and latency; per pair of
candidates, level agreement and score deltas. `build_report` returns the JSON document;
`markdown` renders it for people.

Shapes: levels are `RiskLevel` values; latencies are milliseconds of the provider call (the
answered attempt); costs are in `prices.currency` from `prices.models` (per million tokens).
A label `confirmed` agrees with a level at or above `alert_min_level`, `false_alarm` with one
below it.
"""

from __future__ import annotations

import statistics
from itertools import combinations
from typing import Any

from riskflow.config.prices import PriceTable
from riskflow.config.replay import Candidate
from riskflow.contracts.replay import RecordedEvent, ReplayOutcome
from riskflow.levels import RiskLevel

LEVELS = [level.value for level in RiskLevel]
MISSING = "failed"  # the column of a failed assessment in a confusion table


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100, nearest rank) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return round(ordered[int(rank) - 1], 1)


def _level(outcome: ReplayOutcome | None) -> str:
    if outcome is None or outcome.assessment.risk_level is None:
        return MISSING
    return outcome.assessment.risk_level.value


def _confusion(pairs: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for expected, got in pairs:
        row = table.setdefault(expected, {})
        row[got] = row.get(got, 0) + 1
    return table


def _agreement(pairs: list[tuple[bool, bool]]) -> float | None:
    return round(sum(a == b for a, b in pairs) / len(pairs), 3) if pairs else None


def _failure_kind(reason: str) -> str:
    for kind in ("ContentRejected", "MalformedAnswer", "RateLimited", "InvalidKey", "no API key"):
        if kind in reason:
            return kind
    return "other"


def _candidate_summary(
    candidate: Candidate,
    events: list[RecordedEvent],
    results: dict[int, ReplayOutcome],
    prices: PriceTable,
    alert_min: RiskLevel,
) -> dict[str, Any]:
    done = list(results.values())
    failed = [o for o in done if o.assessment.status == "failed"]
    failures: dict[str, int] = {}
    for outcome in failed:
        kind = _failure_kind(outcome.assessment.failure_reason)
        failures[kind] = failures.get(kind, 0) + 1
    expected = [
        (e.expected_level.value, _level(results[n]))
        for n, e in _ran(events, results)
        if e.expected_level is not None
    ]
    labels = [
        (e.label == "confirmed", _alerting(results[n], alert_min))
        for n, e in _ran(events, results)
        if e.label is not None
    ]
    latencies = [o.latency_ms for o in done if o.assessment.status == "assessed"]
    first = done[0].assessment.provenance if done else None
    return {
        "assessed": len(done) - len(failed),
        "failed": len(failed),
        "refusals": failures.get("ContentRejected", 0),
        "failures": failures,
        "prompt_version": first.prompt_version if first else candidate.prompt,
        "rubric_version": first.rubric_version if first else "",
        "provider": candidate.provider,
        "models": sorted({o.assessment.provenance.model for o in done}),
        "input_tokens": sum(o.usage.input_tokens for o in done),
        "output_tokens": sum(o.usage.output_tokens for o in done),
        "cost": round(sum(prices.cost(o.assessment.provenance.model, o.usage) for o in done), 6),
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "agreement_with_expected": _agreement([(a == b, True) for a, b in expected]),
        "agreement_with_labels": _agreement(labels),
        "confusion_vs_expected": _confusion(expected),
    }


def _ran(
    events: list[RecordedEvent], results: dict[int, ReplayOutcome]
) -> list[tuple[int, RecordedEvent]]:
    return [(n, e) for n, e in enumerate(events) if n in results]


def _alerting(outcome: ReplayOutcome, alert_min: RiskLevel) -> bool:
    level = outcome.assessment.risk_level
    return level is not None and level.rank >= alert_min.rank


def _pair(a: dict[int, ReplayOutcome], b: dict[int, ReplayOutcome]) -> dict[str, Any]:
    both = sorted(set(a) & set(b))
    same = [_level(a[n]) == _level(b[n]) for n in both]
    deltas = [
        (b[n].assessment.risk_score or 0) - (a[n].assessment.risk_score or 0)
        for n in both
        if a[n].assessment.risk_score is not None and b[n].assessment.risk_score is not None
    ]
    return {
        "events": len(both),
        "level_agreement": round(sum(same) / len(same), 3) if same else None,
        "score_delta_mean": round(statistics.fmean(deltas), 2) if deltas else None,
        "score_delta_mean_abs": round(statistics.fmean(abs(d) for d in deltas), 2)
        if deltas
        else None,
        "confusion": _confusion([(_level(a[n]), _level(b[n])) for n in both]),
    }


def build_report(
    run_id: str,
    events: list[RecordedEvent],
    candidates: list[Candidate],
    outcomes: list[tuple[int, ReplayOutcome]],
    prices: PriceTable,
    alert_min: RiskLevel,
    budget: dict[str, Any],
) -> dict[str, Any]:
    """The report document (JSON-ready)."""
    by_candidate: dict[str, dict[int, ReplayOutcome]] = {c.name: {} for c in candidates}
    for n, outcome in outcomes:
        by_candidate[outcome.candidate][n] = outcome
    planned = len(events) * len(candidates)
    return {
        "run_id": run_id,
        "events": len(events),
        "assessments_planned": planned,
        "assessments_run": len(outcomes),
        "budget": budget,
        "currency": prices.currency,
        "alert_min_level": alert_min.value,
        "candidates": {
            c.name: _candidate_summary(c, events, by_candidate[c.name], prices, alert_min)
            for c in candidates
        },
        "pairs": [
            {"a": a.name, "b": b.name, **_pair(by_candidate[a.name], by_candidate[b.name])}
            for a, b in combinations(candidates, 2)
        ],
        "rows": [
            {
                "event": n,
                "camera_id": e.event.camera_id,
                "frame_id": e.event.frame_id,
                "expected_level": e.expected_level.value if e.expected_level else None,
                "label": e.label,
                "levels": {c.name: _row_cell(by_candidate[c.name].get(n)) for c in candidates},
            }
            for n, e in enumerate(events)
        ],
    }


def _row_cell(outcome: ReplayOutcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    a = outcome.assessment
    return {"level": _level(outcome), "score": a.risk_score, "summary": a.summary[:200]}
