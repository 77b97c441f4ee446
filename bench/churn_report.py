"""The tables bench/churn.py prints: every run, and per workload the loads over the ideal
with p99 and wall time beside arrival order's on the same sequences."""

from __future__ import annotations

import statistics
from typing import Any

#: The arrival-order run each run is compared with (the same estimates).
BASELINE = {"wrong": "arrival-wrong"}
COLUMNS = (
    ("run", lambda r: r["run"]),
    ("ordering", lambda r: r.get("ordering", "")),
    ("estimate MB", lambda r: r["estimate_mb"]),
    ("requests", lambda r: r["requests"]),
    ("sizes", lambda r: r.get("sizes", "equal")),
    ("popularity", lambda r: r.get("popularity", "uniform")),
    ("seed", lambda r: r.get("seed", "")),
    ("statuses", lambda r: ", ".join(f"{code}: {n}" for code, n in r["statuses"].items())),
    ("loads", lambda r: r["loads"]),
    ("ideal", lambda r: r.get("ideal_loads", "")),
    ("loads / ideal", lambda r: r.get("loads_vs_ideal", "")),
    ("evictions", lambda r: r["evictions"]),
    ("max used MB / budget", lambda r: f"{r['max_used_mb']} / {r['budget_mb']:g}"),
    ("scheduler peak MB", lambda r: r["scheduler_peak_used_mb"] or "n/a"),
    ("resident peak MB (events)", lambda r: r["peak_resident_mb"]),
    ("s over budget (events)", lambda r: r["seconds_over_budget"]),
    ("over_budget events", lambda r: r["over_budget_events"]),
    ("wall s", lambda r: r["seconds"]),
    ("p50 ms", lambda r: r["p50_ms"]),
    ("p99 ms", lambda r: r["p99_ms"]),
)


def table(reports: list[dict[str, Any]]) -> str:
    """The runs side by side, one markdown row each."""
    return _markdown(
        [name for name, _ in COLUMNS], [[cell(r) for _, cell in COLUMNS] for r in reports]
    )


def summary(reports: list[dict[str, Any]]) -> str:
    """Per run, sizes and popularity over the seeds: loads / ideal (median, worst), and the
    median p99 and wall time beside those of arrival order on the same sequences."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in reports:
        groups.setdefault(
            (r["run"], r.get("sizes", "equal"), r.get("popularity", "uniform")), []
        ).append(r)
    rows = []
    for (label, size, shape), group in groups.items():
        baseline = groups.get((BASELINE.get(label, "arrival-order"), size, shape)) or groups.get(
            ("arrival-order", size, shape), []
        )
        ratios = [r["loads_vs_ideal"] for r in group]
        rows.append(
            [
                label,
                size,
                shape,
                len(group),
                round(statistics.median(ratios), 2),
                max(ratios),
                _median(group, "p99_ms"),
                _median(baseline, "p99_ms"),
                _median(group, "seconds"),
                _median(baseline, "seconds"),
                max(r["peak_resident_mb"] for r in group),
                sum(sum(n for c, n in r["statuses"].items() if c != "200") for r in group),
            ]
        )
    header = [
        "run",
        "sizes",
        "popularity",
        "seeds",
        "loads / ideal (median)",
        "worst",
        "p99 ms",
        "arrival p99 ms",
        "wall s",
        "arrival wall s",
        "resident peak MB",
        "non-200",
    ]
    return _markdown(header, rows)


def _median(group: list[dict[str, Any]], key: str) -> float | str:
    return round(statistics.median(r[key] for r in group), 2) if group else "n/a"


def _markdown(header: list[str], rows: list[list[Any]]) -> str:
    lines = [header, ["---"] * len(header), *([str(cell) for cell in row] for row in rows)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
