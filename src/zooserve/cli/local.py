"""The task pipelines run in this process for the CLI: a manager of its own per run, the
file's folder as its media root, a progress bar on stderr, the API's response shape."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from zooserve.cli.common import errors

if TYPE_CHECKING:
    from zooserve.catalog import Config


def local_config(config: Config, path: Path) -> Config:
    """Local runs read any file the user names: its folder is this run's media root."""
    return config.model_copy(update={"media_root": path.parent.resolve()})


def progress_bar(task: str) -> Progress:
    return Progress(
        TextColumn(task), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=errors
    )


async def detect_local(config: Config, path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from zooserve.api.routes_detect import to_response
    from zooserve.manager import ModelManager
    from zooserve.pipelines.detect import detect

    manager = ModelManager(local_config(config, path))
    with progress_bar("detect") as bar:
        task = bar.add_task("frames", total=len(set(body["frame_numbers"])))
        try:
            result = await detect(
                manager,
                path.name,
                body["frame_numbers"],
                model=body.get("model"),
                confidence_threshold=body["confidence_threshold"],
                prompts=body.get("prompts"),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        finally:
            await manager.close()
    return to_response(result).model_dump()


async def track_local(config: Config, path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from zooserve.api.routes_track import TrackRequest, frame_out, start_tracking, track_response
    from zooserve.manager import ModelManager
    from zooserve.pipelines.track import TrackReport
    from zooserve.pipelines.track_sessions import TrackingSessions

    manager = ModelManager(local_config(config, path))
    request = TrackRequest.model_validate({**body, "video_path": path.name})
    report, collected = TrackReport(), []
    total = request.frame_range.end - request.frame_range.start + 1
    try:
        with progress_bar("track") as bar:
            task = bar.add_task("frames", total=total)
            frames = start_tracking(manager, TrackingSessions(manager), request, report)
            async for frame in frames:
                collected.append(frame_out(frame))
                bar.update(task, completed=len(collected))
        return track_response(report, collected).model_dump()
    finally:
        await manager.close()


async def enrich_local(config: Config, path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from zooserve.api.routes_enrich import EnrichRequest, enrich_response
    from zooserve.manager import ModelManager

    manager = ModelManager(local_config(config, path))
    try:
        with errors.status("enriching (each model loads once)"):
            request = EnrichRequest.model_validate({**body, "video_path": path.name})
            return (await enrich_response(manager, request)).model_dump()
    finally:
        await manager.close()


async def summarize_local(config: Config, path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from zooserve.api.routes_generate import SummarizeRequest, summarize_response
    from zooserve.engines.pool import EnginePool
    from zooserve.manager import ModelManager

    local = local_config(config, path)
    manager = ModelManager(local)
    pool = EnginePool(local, manager)
    await pool.start()
    try:
        with errors.status("summarizing"):
            request = SummarizeRequest.model_validate({**body, "video_path": path.name})
            return (await summarize_response(pool, request)).model_dump()
    finally:
        await pool.close()
        await manager.close()


RUNNERS = {
    "detect": detect_local,
    "track": track_local,
    "enrich": enrich_local,
    "summarize": summarize_local,
}
