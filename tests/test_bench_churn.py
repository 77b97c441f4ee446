"""bench/churn.py: its report from a real server with tiny numbers, and its pure helpers."""

from __future__ import annotations

import pytest

from tests.bench_scripts import load_bench

MB = 2**20


churn = load_bench("churn")


def test_a_small_run_reports_every_request_and_its_memory() -> None:
    [report] = churn.bench(requests=8, concurrency=2, models=2, runs=("wrong",))
    assert {
        "run",
        "requests",
        "statuses",
        "loads",
        "evictions",
        "budget_mb",
        "max_used_mb",
        "scheduler_peak_used_mb",
        "peak_resident_mb",
        "seconds_over_budget",
        "seconds",
        "p50_ms",
        "p99_ms",
        "alive",
    } <= report.keys()
    assert report["run"] == "wrong" and report["estimate_mb"] == churn.WRONG_MB
    assert report["requests"] == 8 == sum(report["statuses"].values())
    assert report["alive"]
    assert report["loads"] >= 1 and report["budget_mb"] == churn.BUDGET_MB
    assert 0 < report["peak_resident_mb"] <= 2 * 40  # two ~39 MB models at most
    assert "| wrong | swap-aware | 10 | 8 |" in churn.table([report])


def event(kind: str, model: str, at: float, seconds: float = 0.0, mb: float = 0) -> dict:
    return {"kind": kind, "model": model, "time": at, "seconds": seconds, "bytes": int(mb * MB)}


@pytest.mark.parametrize(
    ("events", "peak_mb", "over_s"),
    [
        ([], 0, 0),
        # a load counts from its start (end minus duration) to its unload's end, else to the
        # log's last event
        ([event("load", "a", 2, 1, 60), event("load", "b", 2.5, 1, 60)], 120, 1),
        (
            [event("load", "a", 2, 1, 60), event("evict", "a", 3), event("load", "b", 5, 1, 60)],
            60,
            0,
        ),
        # b's load started before a's eviction ended: both held at once
        (
            [event("load", "a", 1, 1, 60), event("evict", "a", 3), event("load", "b", 4, 2, 60)],
            120,
            1,
        ),
        ([event("load_failed", "a", 1, 1), event("unload", "b", 2)], 0, 0),
    ],
)
def test_resident_memory_follows_the_event_log(events: list, peak_mb: float, over_s: float) -> None:
    assert churn.resident(events, 100) == pytest.approx((peak_mb, over_s))


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({"memory_used_mb": 39.0}, (39.0, None)),
        ({"memory": {"used_mb": 78.0}, "memory_used_mb": 1.0}, (78.0, None)),
        ({"scheduler": {"used_bytes": 10 * MB, "peak_used_bytes": 90 * MB}}, (10.0, 90.0)),
        ({"status": "healthy"}, (None, None)),
    ],
)
def test_used_memory_is_read_from_any_health_shape(health: dict, expected: tuple) -> None:
    assert churn.used_mb(health) == expected
