"""`run_track_bench` on a real video with a real detector: a row per tracker, files written,
and one tracker's failure reported in its row without hiding the others."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from tests.track_scenes import Faces
from zooserve.catalog import Config
from zooserve_bench.track import run_track_bench


def test_track_bench_reports_throughput_and_session_memory(tmp_path: Path) -> None:
    Faces().write(tmp_path / "faces.mp4")
    config = Config.model_validate(
        {
            "device": "cpu",
            "memory_budget_mb": 16,
            "media_root": str(tmp_path),
            "tasks": {"video_tracking": {"selected": "bt", "options": ["bt", "bt-blind"]}},
            "models": {
                "face": {
                    "model_id": "opencv:haarcascade_frontalface_default.xml",
                    "family": "opencv_cascade",
                    "framework": "opencv",
                    "options": {"label": "face"},
                },
                "bt": {
                    "model_id": "builtin:bytetrack",
                    "family": "detection_tracker",
                    "options": {"detector": "face"},
                },
                # Misconfigured: its detector is not a model. Its row says so.
                "bt-blind": {
                    "model_id": "builtin:bytetrack",
                    "family": "detection_tracker",
                    "options": {"detector": "missing"},
                },
            },
        }
    )
    printed = io.StringIO()
    report = run_track_bench(
        config,
        tmp_path / "out",
        Console(file=printed, width=200),
        frames=6,
        video="faces.mp4",
        prompts=["face"],
    )
    ok, failed = report["trackers"]
    assert ok["tracker"] == "bt" and ok["detector"] == "face" and ok["frames"] == 6
    assert ok["tracked_fps"] > 0 and ok["peak_session_mb"] > 0
    assert ok["objects_per_frame"] >= 1.5  # two faces, one sometimes missed for a frame
    assert failed["tracker"] == "bt-blind" and "'missing'" in failed["error"]
    written = json.loads((tmp_path / "out" / "track_bench.json").read_text())
    assert written["trackers"][0]["tracked_fps"] == ok["tracked_fps"]
    assert "| bt | face |" in (tmp_path / "out" / "track_bench.md").read_text()
    assert "tracked frames/s" in printed.getvalue()


def test_bench_track_through_the_cli_runs_the_frames_asked_for(tmp_path: Path) -> None:
    """`zooserve bench --track --frames 4` tracks 4 frames (it ran 48 whatever was asked)."""
    import yaml
    from typer.testing import CliRunner

    from zooserve.cli import app

    shipped = yaml.safe_load((Path(__file__).parents[1] / "config" / "models.yaml").read_text())
    names = ["hog-bytetrack", "opencv-hog-people"]
    data = {
        "device": "cpu",
        "media_root": str(tmp_path / "media"),
        "tasks": {"video_tracking": {"selected": names[0], "options": names[:1]}},
        "models": {name: shipped["models"][name] for name in names},
    }
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    args = ["bench", "--track", "--frames", "4", "-c", str(config), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "track_bench.json").read_text())
    assert report["frames"] == 4 and report["trackers"][0]["frames"] == 4
