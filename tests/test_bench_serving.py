"""bench/serving.py: its report from real servers with tiny numbers (no timing assertions)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.bench_scripts import load_bench
from tests.conftest import TinyModels

serving = load_bench("serving")
FIGURES = {"frames_per_s", "p50_ms", "p99_ms"}
RUN_KEYS = {"requests", "statuses", "seconds", *FIGURES}


def test_zooserve_and_bare_fastapi_alternate_and_answer_every_request(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    pytest.importorskip("ultralytics")
    servers = ["zooserve", "zooserve-unbatched", "fastapi"]
    report = serving.bench(
        tmp_path,
        servers,
        requests=3,
        concurrencies=(1, 2),
        rounds=3,
        imgsz=64,
        checkpoint=tiny_models.path("yolo") / "plate.pt",
    )
    assert list(report["servers"]) == servers
    # Every round every server ran once, the order rotated by one place per round.
    assert report["orders"] == [servers, servers[1:] + servers[:1], servers[2:] + servers[:2]]
    for summaries in report["servers"].values():
        assert list(summaries) == ["1", "2"]
        for summary in summaries.values():
            assert summary["statuses"] == {"200": 9}  # 3 rounds x 3 requests
            assert [run.keys() >= RUN_KEYS for run in summary["runs"]] == [True] * 3
            for figure in FIGURES:
                spread = summary[figure]
                assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    assert set(report["ratios"]) == {"zooserve/fastapi@1", "zooserve/fastapi@2"}
    assert [best["peer"] for best in report["best_peer"].values()] == ["fastapi", "fastapi"]
    assert list(report["batching"]) == ["1", "2"]
    for ratio in [*report["ratios"].values(), *report["batching"].values()]:
        assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
    text = serving.table(report)
    assert "| 1 | zooserve |" in text and "| 2 | fastapi |" in text
    assert "| 2 | fastapi | **" in text
    assert "batching (zooserve ÷ zooserve-unbatched): 1 clients: " in text


def run(fps: float) -> dict[str, float]:
    return {"frames_per_s": fps}


def test_the_best_peer_is_the_fastest_by_median_and_ratios_pair_rounds() -> None:
    """A peer with one lucky round does not beat a steadily faster one; each round's zooserve
    burst is divided by the same round's peer burst."""
    runs = {
        "zooserve": {"8": [run(30), run(20), run(30)]},
        "litserve-batched": {"8": [run(60), run(10), run(10)]},  # mean 26.7, median 10
        "litserve": {"8": [run(15), run(10), run(15)]},
        "fastapi": {"8": [run(25), run(20), run(25)]},  # median 25: the best
        "zooserve-unbatched": {"8": [run(20), run(20), run(30)]},
    }
    out = serving.comparisons(runs)
    assert out["best_peer"] == {"8": {"peer": "fastapi", "median": 1.2, "min": 1.0, "max": 1.2}}
    assert out["ratios"]["zooserve/litserve@8"] == {"median": 2.0, "min": 2.0, "max": 2.0}
    assert out["ratios"]["zooserve/litserve-batched@8"] == {"median": 2.0, "min": 0.5, "max": 3.0}
    assert out["batching"] == {"8": {"median": 1.0, "min": 1.0, "max": 1.5}}
    assert serving.comparisons({"fastapi": runs["fastapi"]}) == {
        "ratios": {},
        "best_peer": {},
        "batching": {},
    }


def test_litserve_with_and_without_batching_answer_every_request(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    """LitServe is a benchmark peer, not a dependency: checked where it is installed."""
    pytest.importorskip("ultralytics")
    import litserve  # noqa: F401  (./bootstrap test installs the `bench` extra)

    report = serving.bench(
        tmp_path,
        ["litserve-batched", "litserve"],
        requests=3,
        concurrencies=(2,),
        rounds=1,
        imgsz=64,
        checkpoint=tiny_models.path("yolo") / "plate.pt",
    )
    for kind in ("litserve-batched", "litserve"):
        assert report["servers"][kind]["2"]["statuses"] == {"200": 3}
    # LitServe's API and inference worker processes are stopped with it (its process group).
    ours = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    _, alive = psutil.wait_procs(ours, timeout=15)  # signalled: let them finish exiting
    assert [p.pid for p in alive] == []


def test_a_missing_litserve_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(serving, "ls", None)
    with pytest.raises(SystemExit, match="pip install litserve"):
        serving.bench(tmp_path, ["zooserve", "litserve"])
