"""The replay report (`workers.replay.report.build_report`) as a Markdown page."""

from __future__ import annotations

from typing import Any

from workers.replay.report import LEVELS, MISSING


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
        "",
    ]


def _confusion(title: str, table: dict[str, dict[str, int]]) -> list[str]:
    if not table:
        return []
    columns = [c for c in [*LEVELS, MISSING] if any(c in row for row in table.values())]
    rows = [[f"**{r}**", *(table[r].get(c, 0) for c in columns)] for r in LEVELS if r in table]
    return [f"{title} (rows: reference, columns: candidate)", "", *_table(["", *columns], rows)]


SUMMARY_FIELDS = [
    ("assessed", "assessed"),
    ("failed", "failed"),
    ("refusals", "refusals"),
    ("agreement_with_expected", "agreement with expected"),
    ("agreement_with_labels", "agreement with labels"),
    ("input_tokens", "input tokens"),
    ("output_tokens", "output tokens"),
    ("cost", "cost"),
    ("latency_ms_p50", "latency p50 ms"),
    ("latency_ms_p95", "latency p95 ms"),
    ("prompt_version", "prompt"),
    ("rubric_version", "rubric"),
    ("models", "models"),
]


def markdown(report: dict[str, Any]) -> str:
    names = list(report["candidates"])
    lines = [
        f"# Replay {report['run_id']}",
        "",
        f"{report['events']} events, {report['assessments_run']} of "
        f"{report['assessments_planned']} assessments run; budget {report['budget']}; "
        f"cost in {report['currency']}; alerts from `{report['alert_min_level']}`.",
        "",
        "## Candidates",
        "",
    ]
    summary = report["candidates"]
    rows = [[label, *(summary[n][key] for n in names)] for key, label in SUMMARY_FIELDS]
    lines += _table(["", *names], rows)
    for name in names:
        lines += _confusion(
            f"### {name} vs expected levels", summary[name]["confusion_vs_expected"]
        )
    if report["pairs"]:
        lines += ["## Pairs", ""]
        for pair in report["pairs"]:
            lines += [
                f"### {pair['a']} → {pair['b']}: level agreement {pair['level_agreement']}, "
                f"score delta mean {pair['score_delta_mean']} "
                f"(mean abs {pair['score_delta_mean_abs']}) over {pair['events']} events",
                "",
                *_confusion(f"{pair['a']} vs {pair['b']}", pair["confusion"]),
            ]
    lines += ["## Events", ""]
    event_rows = [
        [
            r["event"],
            r["camera_id"],
            r["frame_id"],
            r["expected_level"],
            r["label"],
            *((f"{c['level']} ({c['score']})" if c else None) for c in r["levels"].values()),
        ]
        for r in report["rows"]
    ]
    lines += _table(["#", "camera", "frame", "expected", "label", *names], event_rows)
    return "\n".join(lines)
