"""bench/serving.py: its report from real servers with tiny numbers (no timing assertions)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.bench_scripts import load_bench
from tests.conftest import TinyModels

serving = load_bench("serving")
RUN_KEYS = {"requests", "statuses", "seconds", "frames_per_s", "p50_ms", "p99_ms"}


def test_zooserve_and_bare_fastapi_answer_every_request(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    pytest.importorskip("ultralytics")
    report = serving.bench(
        tmp_path,
        ["zooserve", "fastapi"],
        requests=4,
        concurrencies=(1, 2),
        batching_concurrency=2,
        imgsz=64,
        checkpoint=tiny_models.path("yolo") / "plate.pt",
    )
    assert list(report["servers"]) == ["zooserve", "fastapi"]
    assert [list(runs) for runs in report["servers"].values()] == [["1", "2"], ["1", "2"]]
    assert list(report["zooserve_unbatched"]) == ["2"]
    for runs in [*report["servers"].values(), report["zooserve_unbatched"]]:
        for run in runs.values():
            assert run.keys() >= RUN_KEYS
            assert run["statuses"] == {"200": 4}
    assert report["batching_ratio"] > 0
    assert set(report["ratios"]) == {"zooserve/fastapi@1", "zooserve/fastapi@2"}
    text = serving.table(report)
    assert "| zooserve | 1 |" in text and "| fastapi | 2 |" in text and "batching:" in text


def test_litserve_answers_every_request(tiny_models: TinyModels, tmp_path: Path) -> None:
    """LitServe is a benchmark peer, not a dependency: checked where it is installed."""
    pytest.importorskip("ultralytics")
    import litserve  # noqa: F401  (./bootstrap test installs the `bench` extra)

    report = serving.bench(
        tmp_path,
        ["litserve"],
        requests=3,
        concurrencies=(2,),
        batching_concurrency=None,
        imgsz=64,
        checkpoint=tiny_models.path("yolo") / "plate.pt",
    )
    assert report["servers"]["litserve"]["2"]["statuses"] == {"200": 3}
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
