"""`zooserve bench`: a model that fails is reported in its row and the run goes on; the tables
stay readable at 80 columns (wrapped on a terminal, Markdown otherwise)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from zooserve import cli
from zooserve_bench import models as bench
from zooserve_bench.report import render_rows

SHIPPED = Path(__file__).parents[1] / "config" / "models.yaml"


def bench_config(tmp_path: Path) -> Path:
    """The shipped OpenCV HOG detector, and a cascade whose XML file is garbage."""
    shipped = yaml.safe_load(SHIPPED.read_text())["models"]
    broken = tmp_path / "broken-cascade.xml"
    broken.write_text("<opencv_storage>not a cascade</opencv_storage>")
    data = {
        "device": "cpu",
        "media_root": str(tmp_path / "media"),
        "jobs_db": str(tmp_path / "jobs.sqlite3"),
        "tasks": {
            "object_detection": {"selected": "opencv-hog-people", "options": ["opencv-hog-people"]}
        },
        "models": {
            "broken-cascade-with-a-long-name": {
                "model_id": str(broken),
                "family": "opencv_cascade",
                "framework": "opencv",
            },
            "opencv-hog-people": shipped["opencv-hog-people"],
        },
    }
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_bench_reports_a_failed_load_in_its_row_and_goes_on_at_80_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    terminal = Console(force_terminal=True, color_system=None)  # as a user's 80-column terminal
    assert terminal.width == 80
    monkeypatch.setattr(cli.common, "console", terminal)
    out = tmp_path / "out"
    args = ["bench", "--config", str(bench_config(tmp_path)), "--frames", "2", "--out", str(out)]
    args += ["-m", "broken-cascade-with-a-long-name", "-m", "opencv-hog-people"]
    result = CliRunner().invoke(cli.app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    output = result.output
    assert "…" not in output  # nothing truncated ("ow… │ ow…")
    table = output[: output.index("Throughput on")]
    assert max(len(line) for line in table.splitlines()) <= 80
    rows = [line for line in table.splitlines() if line.startswith("│")]
    assert rows[-1].split("│")[1].strip() == "opencv-hog-people"  # measured after the failure
    assert rows[0].split("│")[-2].strip() == "error"
    # The error, in full, under the table (wrapped at word boundaries).
    errors = " ".join(table[table.index("└") :].split()[1:])
    assert errors.startswith("broken-cascade-with-a-long-name: model_load_failed:"), errors
    report = json.loads((out / "bench.json").read_text())
    broken, hog = report["models"]
    assert broken["error"].startswith("model_load_failed") and broken["memory_mb"] is None
    assert hog["model"] == "opencv-hog-people" and "error" not in hog
    assert hog["seconds_per_frame"] > 0 and hog["verified_unload"]
    side_by_side = report["http_vs_in_process"]
    assert side_by_side["model"] == "opencv-hog-people"
    # Alternating rounds, and one-frame requests timed on every path as well.
    assert side_by_side["rounds"] == 3 and side_by_side["pipeline_over_adapter"] > 0
    assert all(side_by_side["one_frame"][f"{path}_fps"] > 0 for path in bench.PATHS)
    assert "one-frame frames/s" in (out / "bench.md").read_text()
    assert "| broken-cascade-with-a-long-name |" in (out / "bench.md").read_text()


def test_rows_print_as_markdown_when_stdout_is_not_a_terminal(tmp_path: Path) -> None:
    rows = [
        {"model": "a-model-with-a-rather-long-name", "memory_mb": 1.5, "meets_criteria": True},
        {"model": "b", "memory_mb": None, "error": "model_load_failed: x | y"},
    ]
    console = Console(file=(tmp_path / "out.txt").open("w"), width=80)
    assert not console.is_terminal
    render_rows(console, rows, bench.SUMMARY_COLUMNS, title="t")
    console.file.close()
    text = (tmp_path / "out.txt").read_text()
    assert text.splitlines() == [
        "| model | memory_mb | meets_criteria | error |",
        "|---|---|---|---|",
        "| a-model-with-a-rather-long-name | 1.5 | True |  |",
        "| b |  |  | model_load_failed: x \\| y |",
    ]


def test_zoo_bench_reports_a_failed_model_in_its_row_and_goes_on(tmp_path: Path) -> None:
    from zooserve.catalog import load_config
    from zooserve_bench.zoo import run_zoo_bench

    data = yaml.safe_load(bench_config(tmp_path).read_text())
    data["tasks"] = {}  # both models are zoo models now: the broken one is measured first
    data["models"]["opencv-hog-people"]["category"] = "detection"
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(data))
    console = Console(file=(tmp_path / "out.txt").open("w"), width=80)
    report = run_zoo_bench(load_config(path), out=tmp_path / "out", console=console)
    broken, hog = report["models"]
    assert broken["error"].startswith("model_load_failed") and broken["memory_mb"] is None
    assert hog["model"] == "opencv-hog-people" and hog["seconds_per_item"] > 0
    assert "| broken-cascade-with-a-long-name |" in (tmp_path / "out" / "bench_zoo.md").read_text()


def test_bench_that_measures_nothing_exits_1_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, owlv2-base is not here: nothing is measured, and that is a failure."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = yaml.safe_load(SHIPPED.read_text())
    data.update(media_root=str(tmp_path / "media"), jobs_db=str(tmp_path / "jobs.sqlite3"))
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump(data))
    args = ["bench", "-m", "owlv2-base", "--frames", "1", "-c", str(config)]
    result = CliRunner().invoke(cli.app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    reason = " ".join(result.stderr.split())
    assert "nothing was measured" in reason
    assert "owlv2-base: model_unavailable" in reason and "not present" in reason
