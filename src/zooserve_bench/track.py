"""`zooserve bench --track`: tracked frames per second and session memory, per tracker.

Every available tracker (the video_tracking task's options, plus any other model of a tracker
family) runs the track pipeline in process over the same frames of one video with the same
text prompt (a concept tracker such as SAM 3 reads it itself; the others get their first
boxes, or every frame's, from a detector), after a warm-up run that loads its models.
Reported per tracker: tracked frames/s (decode + detection or segmentation + association, as
a request sees it), the peak bytes its session held (the ledger's figure), the model's
measured memory, objects per frame.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from zooserve.catalog import Config
from zooserve.core.errors import ZooError
from zooserve.manager import ModelManager
from zooserve.media import MediaSource, resolve_media_path
from zooserve.media.samples import install_samples
from zooserve.pipelines.track import FrameRange, TrackReport, track
from zooserve.runtimes.memory import MB

TRACKER_FAMILIES = {"detection_tracker", "sam2", "samurai", "sam2long", "edgetam", "sam3_tracker"}
DEFAULT_VIDEO = "samples/bikes.mp4"


def tracker_names(manager: ModelManager) -> list[str]:
    """The video_tracking task's options, then other models of tracker families, whose own
    weights are here (a detection tracker whose detector is missing gets a row saying so)."""
    task = manager.config.tasks.get("video_tracking")
    names = list(task.options) if task else []
    names += [
        n
        for n, s in manager.config.models.items()
        if s.family in TRACKER_FAMILIES and n not in names
    ]
    specs = manager.config.models
    return [n for n in names if n in specs and specs[n].enabled and manager.source(specs[n])]


async def _measure(
    manager: ModelManager, name: str, video: str, frames: int, prompts: list[str]
) -> dict[str, Any]:
    span = FrameRange(0, frames - 1)
    async for _ in track(manager, video, FrameRange(0, 0), prompts=prompts, tracking_model=name):
        pass  # loads the tracker (and its detector) outside the timed run
    report = TrackReport()
    objects = 0
    started = time.perf_counter()
    async for frame in track(
        manager, video, span, prompts=prompts, tracking_model=name, report=report
    ):
        objects += len(frame.detections)
    seconds = time.perf_counter() - started
    memory = [manager.state(n).measured_bytes or 0 for n in (name, report.detector) if n]
    return {
        "tracker": name,
        "family": manager.state(name).spec.family,
        "detector": report.detector or "",
        "device": manager.device,
        "frames": report.frames,
        "tracked_fps": round(report.frames / seconds, 2),
        "objects_per_frame": round(objects / max(1, report.frames), 2),
        "peak_session_mb": round(report.peak_session_bytes / MB, 3),
        "model_memory_mb": round(sum(memory) / MB, 2),
        "error": "",
    }


def run_track_bench(
    config: Config,
    out: Path,
    console: Console,
    *,
    models: list[str] | None = None,
    frames: int = 48,
    video: str | None = None,
    prompts: list[str] | None = None,
) -> dict[str, Any]:
    """Benchmark trackers on `video` (inside media_root; default: the bikes.mp4 sample)."""
    if video is None:
        install_samples(config.media_dir)
        video = DEFAULT_VIDEO
    with MediaSource.open(resolve_media_path(config.media_dir, video)) as media:
        frames = max(1, min(frames, media.frame_count))
    texts = prompts or list(config.default_prompts[:1])

    async def measure_all() -> list[dict[str, Any]]:
        manager = ModelManager(config)
        try:
            rows = []
            for name in models or tracker_names(manager):
                try:
                    rows.append(await _measure(manager, name, video, frames, texts))
                except ZooError as exc:  # one tracker failing must not hide the others
                    rows.append({"tracker": name, "error": f"{exc.code}: {exc.message}"})
            return rows
        finally:
            await manager.close()

    rows = asyncio.run(measure_all())
    report = {"video": video, "frames": frames, "prompts": texts, "trackers": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "track_bench.json").write_text(json.dumps(report, indent=2))
    (out / "track_bench.md").write_text(_markdown(report))
    table = Table(
        "tracker",
        "detector",
        "frames",
        "tracked frames/s",
        "peak session MB",
        "model MB",
        "objects/frame",
        "error",
        title=f"tracking {video}",
    )
    for row in rows:
        table.add_row(
            *(
                str(row.get(key, ""))
                for key in (
                    "tracker",
                    "detector",
                    "frames",
                    "tracked_fps",
                    "peak_session_mb",
                    "model_memory_mb",
                    "objects_per_frame",
                    "error",
                )
            )
        )
    console.print(table)
    console.print(f"written: {out / 'track_bench.md'}, {out / 'track_bench.json'}")
    return report


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Tracking {report['frames']} frames of {report['video']}, prompts {report['prompts']}:",
        "",
        "| tracker | detector | tracked frames/s | peak session MB | model MB | objects/frame |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["trackers"]:
        if row.get("error"):
            lines.append(f"| {row['tracker']} | failed: {row['error']} | | | | |")
            continue
        lines.append(
            f"| {row['tracker']} | {row['detector']} | {row['tracked_fps']} | "
            f"{row['peak_session_mb']} | {row['model_memory_mb']} | {row['objects_per_frame']} |"
        )
    return "\n".join(lines) + "\n"
