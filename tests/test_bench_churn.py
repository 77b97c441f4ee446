"""bench/churn.py: its report from a real server with tiny numbers, and its pure helpers:
the ideal online schedule it divides loads by, the sequences it sends, its tables."""

from __future__ import annotations

import pytest

from tests.bench_scripts import load_bench
from zooserve.catalog import Config

MB = 2**20
AGE_CAP_S = Config.model_fields["max_wait_s"].default  # the service's default `max_wait_s`


churn = load_bench("churn")
from bench import churn_replay  # noqa: E402
from bench.churn_ideal import ideal_loads, sequence  # noqa: E402 (churn put bench/ on the path)
from bench.churn_zoo import WRONG_FACTOR  # noqa: E402


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
        "ideal_loads",
        "loads_vs_ideal",
    } <= report.keys()
    assert report["run"] == "wrong"
    assert report["estimate_mb"] == pytest.approx(report["real_mb"] / WRONG_FACTOR, abs=0.01)
    assert report["requests"] == 8 == sum(report["statuses"].values())
    assert report["alive"]
    assert report["loads"] >= 1 and report["budget_mb"] == churn.BUDGET_MB
    assert 0 < report["peak_resident_mb"] <= 2 * 40  # two ~39 MB models at most
    assert f"| wrong | swap-aware | {report['estimate_mb']} | 8 | equal | uniform | 7 |" in (
        churn.table([report])
    )
    assert 1 <= report["ideal_loads"] <= report["loads"]  # no schedule beats the ideal
    assert report["loads_vs_ideal"] == round(report["loads"] / report["ideal_loads"], 2)


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


EQUAL = {"a": 1, "b": 1, "c": 1}


@pytest.mark.parametrize(
    ("order", "sizes", "budget", "concurrency", "loads"),
    [
        ([], EQUAL, 2, 4, 0),
        (list("aaaa"), EQUAL, 1, 1, 1),
        # one client, room for one: every change of model is a load
        (list("abab"), EQUAL, 1, 1, 4),
        # four clients see all four at once: each model once
        (list("abab"), EQUAL, 1, 4, 2),
        # room for two, online (no look-ahead): c evicts the least recently used (a), a evicts
        # b, b evicts c
        (list("abcab"), EQUAL, 2, 1, 5),
        # the most wanted missing model first: c (three waiting), then b (two), then a; b
        # first (arrival order) would need c, a and b again: 4
        (list("bcccab"), EQUAL, 1, 4, 3),
        # unequal sizes: big needs both small ones out, then one small comes back
        (["a", "b", "big", "a"], {"a": 1, "b": 1, "big": 2}, 2, 1, 4),
    ],
)
def test_the_ideal_online_schedule(
    order: list[str], sizes: dict, budget: float, concurrency: int, loads: int
) -> None:
    assert ideal_loads(order, sizes, budget, concurrency) == loads


def test_the_ideal_of_the_issue_workload_is_about_a_tenth_of_its_requests() -> None:
    """Issue #18: 4 models, room for 2, 8 clients, 240 requests: mean 24.3 loads over 1,000
    sequences, range 18-29 (here over 200 seeds)."""
    names = ["owl-0", "owl-1", "owl-2", "owl-3"]
    sizes = dict.fromkeys(names, 39.0)
    loads = [
        ideal_loads(sequence(names, 240, seed, "uniform"), sizes, 100, 8) for seed in range(200)
    ]
    assert 23 <= sum(loads) / len(loads) <= 26 and min(loads) >= 17 and max(loads) <= 30


def test_skewed_popularity_has_one_hot_model_and_a_long_tail() -> None:
    names = ["hot", "b", "c", "d"]
    counts = [sequence(names, 2000, 1, "skewed").count(name) for name in names]
    assert counts == sorted(counts, reverse=True) and counts[0] > sum(counts[1:])
    assert sequence(names, 50, 3, "uniform") == sequence(names, 50, 3, "uniform")  # seeded
    with pytest.raises(ValueError, match="popularity"):
        sequence(names, 1, 1, "zipf")


def test_the_summary_puts_each_workload_beside_arrival_order() -> None:
    def row(label: str, loads: int, p99: int) -> dict:
        statuses = {"200": 10}
        return {
            "run": label,
            "loads_vs_ideal": loads / 10,
            "p99_ms": p99,
            "seconds": 2.0,
            "peak_resident_mb": 78.0,
            "statuses": statuses,
        }

    text = churn.summary([row("honest", 12, 300), row("arrival-order", 20, 500)])
    assert "| honest | equal | uniform | 1 | 1.2 | 1.2 | 300 | 500 | 2.0 | 2.0 | 78.0 | 0 |" in text


@pytest.mark.parametrize("zoo", ["equal", "unequal"])
@pytest.mark.parametrize("popularity", ["uniform", "skewed"])
def test_the_real_scheduler_replayed_needs_at_most_1_2x_the_ideal(
    zoo: str, popularity: str
) -> None:
    """Issue #18 item 1: the real scheduler and policy on simulated time (churn_replay.py),
    240 requests from 8 closed-loop clients, loads of 0.05 s (this CPU's tiny OWLv2), 0.3 s
    and 1 s, the default age cap. It
    needed 1.5x the ideal (1.65x with the 1 s cap) when it swapped the moment the last request
    ended, before that client asked again, and started a second swap beside a load it had
    just admitted; arrival order needs 2-3x. Counts loads: no timing is asserted."""
    ratios = [
        row["ratio"]
        for load_s in (0.05, 0.3, 1.0)
        for row in churn_replay.ratios(
            range(1, 6), popularity, zoo, AGE_CAP_S, timing=churn_replay.Timing(load_s)
        )
    ]
    assert sum(ratios) / len(ratios) <= 1.2
    arrival = churn_replay.ratios([1], popularity, zoo, max_wait_s=0.0)
    assert arrival[0]["ratio"] >= 1.8  # the replay tells a thrashing order apart


@pytest.mark.parametrize("zoo", ["equal", "unequal"])
@pytest.mark.parametrize("popularity", ["uniform", "skewed"])
def test_with_dear_loads_the_replayed_tail_and_wall_beat_arrival_order(
    zoo: str, popularity: str
) -> None:
    """Issue #18 item 2's other goals, where they can be had together with few loads: with
    1 s loads (a GPU model's are seconds) the replayed p99 and wall time are no worse than
    arrival order's on the same sequences (simulated seconds: deterministic, not a timing of
    this machine). With 0.05 s loads they are worse: bench/README "Churn" has the trade-off."""
    timing = churn_replay.Timing(load_s=1.0)
    ours = churn_replay.ratios(range(1, 6), popularity, zoo, AGE_CAP_S, timing=timing)
    arrival = churn_replay.ratios(range(1, 6), popularity, zoo, 0.0, timing=timing)
    for key in ("p99_s", "seconds"):
        assert sum(r[key] for r in ours) <= sum(r[key] for r in arrival)
