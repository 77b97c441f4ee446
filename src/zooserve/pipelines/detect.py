"""Detection: frames of one video (or image) through the selected detector, batched."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zooserve.core.errors import InvalidInput
from zooserve.families.base import Detector
from zooserve.families.results import FrameDetections
from zooserve.manager import ModelManager
from zooserve.media import MediaSource, resolve_media_path
from zooserve.pipelines.detecting import detect_frames, require_kind
from zooserve.pipelines.selection import DETECTION, selected_model

TASK = DETECTION


@dataclass(frozen=True)
class DetectResult:
    model: str
    frames: list[FrameDetections]  # in the order asked for (a repeated frame repeats)
    processing_time: float  # seconds, decode + inference
    width: int
    height: int
    fps: float
    frame_count: int
    prompts: list[str] | None


async def detect(
    manager: ModelManager,
    video_path: str,
    frame_numbers: Sequence[int],
    *,
    model: str | None = None,
    confidence_threshold: float = 0.3,
    prompts: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DetectResult:
    """Decode the frames, lease the detector once, and run it in batches.

    `progress(done, total)` is called after each batch (frames done of distinct frames).
    """
    started = time.perf_counter()
    name = selected_model(manager, TASK, model, prompts)
    path = resolve_media_path(manager.config.media_dir, video_path)
    if len(frame_numbers) > manager.config.max_frames_per_request:
        raise InvalidInput(
            f"{len(frame_numbers)} frames requested; the limit is "
            f"{manager.config.max_frames_per_request}",
            {"limit": manager.config.max_frames_per_request},
        )
    if not frame_numbers:
        raise InvalidInput("frame_numbers must list at least one frame")
    require_kind(manager, name, Detector)
    unique = sorted(set(frame_numbers))  # decode forward once; a repeated frame runs once
    # Opening may count packets (containers without a frame count): keep it off the loop.
    source = await asyncio.to_thread(
        MediaSource.open, path, max_pixels=manager.config.max_frame_pixels
    )
    with source:
        source.validate(unique)  # bad frame numbers are a 422 before any model loads
        # Closing `source` under a running decode only asks it to stop (MediaSource.close),
        # so a cancelled request cannot crash FFmpeg.
        found, queries = await detect_frames(
            manager,
            name,
            unique,
            lambda numbers: asyncio.to_thread(source.read, numbers),
            threshold=confidence_threshold,
            prompts=prompts,
            progress=progress,
        )
        info = (source.width, source.height, source.fps, source.frame_count)
    by_number = {frame.frame_number: frame for frame in found}
    return DetectResult(
        model=name,
        frames=[by_number[n] for n in frame_numbers],
        processing_time=time.perf_counter() - started,
        width=info[0],
        height=info[1],
        fps=info[2],
        frame_count=info[3],
        prompts=queries,
    )
