"""`zooserve bench --track` rows for issue #19's trackers: SAM 3 video (text prompts, no detector)
measured on the tiny random checkpoint; EdgeTAM found among the trackers to measure."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from rich.console import Console

from tests.conftest import TinyModels
from zooserve.catalog import Config
from zooserve.manager import ModelManager
from zooserve_bench.track import run_track_bench, tracker_names


async def test_sam3_video_gets_a_track_bench_row(
    tmp_path: Path, media_root: Path, tiny_models: TinyModels
) -> None:
    config = Config.model_validate(
        {
            "device": "cpu",
            "media_root": str(media_root),
            "tasks": {"video_tracking": {"selected": "sam3-video", "options": ["sam3-video"]}},
            "models": {
                "sam3-video": {
                    "model_id": str(tiny_models.path("sam3_video")),
                    "family": "sam3_tracker",
                    "category": "tracking",
                },
                # not a task option: found by its family
                "edgetam": {
                    "model_id": str(tiny_models.path("edgetam")),
                    "family": "edgetam",
                    "category": "tracking",
                },
            },
        }
    )
    manager = ModelManager(config)
    assert tracker_names(manager) == ["sam3-video", "edgetam"]
    await manager.close()

    report = await _bench(config, tmp_path)

    (row,) = report["trackers"]
    assert row["tracker"] == "sam3-video" and row["family"] == "sam3_tracker", row
    assert row["detector"] == "" and not row["error"]  # SAM 3 finds the concept itself
    assert row["frames"] == 6 and row["tracked_fps"] > 0
    assert row["objects_per_frame"] > 0 and row["peak_session_mb"] > 0
    assert "| sam3-video |" in (tmp_path / "out" / "track_bench.md").read_text()


async def _bench(config: Config, tmp_path: Path) -> dict[str, Any]:
    """run_track_bench runs its own event loop: off this test's loop, in a thread."""
    return await asyncio.to_thread(
        run_track_bench,
        config,
        tmp_path / "out",
        Console(file=io.StringIO(), width=200),
        models=["sam3-video"],
        frames=6,
        video="walk.mp4",
        prompts=["person"],
    )
