"""Detection: frames of one video (or image) through the selected detector, batched."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import supervision as sv

from zooserve.errors import FamilyNotImplemented, InvalidInput
from zooserve.families import adapter_class
from zooserve.families.base import Detector, ModelAdapter
from zooserve.inference import retrieve_outcome
from zooserve.manager import ModelManager
from zooserve.media import MediaSource, resolve_media_path
from zooserve.pipelines.selection import selected_model

TASK = "object_detection"
log = logging.getLogger("zooserve.pipelines.detect")


@dataclass(frozen=True)
class FrameDetections:
    frame_number: int
    timestamp: float  # seconds
    detections: sv.Detections


@dataclass(frozen=True)
class DetectResult:
    model: str
    frames: list[FrameDetections]
    processing_time: float  # seconds, decode + inference
    width: int
    height: int
    fps: float
    frame_count: int
    prompts: list[str] | None


def _batch_size(manager: ModelManager, name: str) -> int:
    return max(1, int(manager.state(name).spec.options.get("batch_size", 4)))


def require_kind(manager: ModelManager, name: str, kind: type[Any]) -> type[ModelAdapter] | None:
    """The model's adapter class when its family is registered; a model of the wrong kind is
    refused from its config, before anything loads."""
    family = manager.state(name).spec.family
    try:
        cls = adapter_class(family) if family else None
    except FamilyNotImplemented:
        return None  # the load reports it (or a custom adapter factory knows the family)
    if cls is not None and not issubclass(cls, kind):
        raise InvalidInput(
            f"model {name!r} is a {cls.kind}, not a {kind.kind}",
            {"model": name, "kind": cls.kind},
        )
    return cls


def _as_detector(name: str, adapter: ModelAdapter) -> Detector:
    if not isinstance(adapter, Detector):
        raise InvalidInput(f"model {name!r} is a {adapter.kind}, not a detector")
    return adapter


def _queries(
    manager: ModelManager, adapter: Detector, prompts: Sequence[str] | None
) -> list[str] | None:
    """Text queries for open-vocabulary detectors (the config's defaults when none given)."""
    if not adapter.open_vocabulary:
        return None
    queries = [p.strip() for p in (prompts or manager.config.default_prompts) if p.strip()]
    if not queries:
        raise InvalidInput("prompts must contain at least one non-empty text query")
    return queries


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
    # Frames stream through the detector a chunk at a time: only (number, time, detections)
    # are kept, so a request holds at most two chunks of pixels whatever its frame count.
    found: list[tuple[int, float, sv.Detections]] = []
    with source:
        source.validate(unique)  # bad frame numbers are a 422 before any model loads
        batch_size = _batch_size(manager, name)
        chunks = [unique[i : i + batch_size] for i in range(0, len(unique), batch_size)]
        # Decoding runs one chunk ahead: the first chunk while the model loads, the next one
        # while the current one is inferred. Closing `source` under a running decode only
        # asks it to stop (MediaSource.close), so a cancelled request cannot crash FFmpeg.
        decoding = asyncio.create_task(asyncio.to_thread(source.read, chunks[0]))
        try:
            async with manager.use(name) as leased:
                adapter = _as_detector(name, leased)
                queries = _queries(manager, adapter, prompts)
                for index in range(len(chunks)):
                    chunk = await decoding
                    if index + 1 < len(chunks):
                        decoding = asyncio.create_task(
                            asyncio.to_thread(source.read, chunks[index + 1])
                        )
                    results = await manager.infer_batched(
                        adapter.detect, [f.image for f in chunk], queries, confidence_threshold
                    )
                    found += [
                        (f.number, f.timestamp, d) for f, d in zip(chunk, results, strict=True)
                    ]
                    del chunk
                    if progress:
                        progress(len(found), len(unique))
        finally:
            decoding.add_done_callback(retrieve_outcome)
        info = (source.width, source.height, source.fps, source.frame_count)
    by_number = {n: FrameDetections(n, t, d) for n, t, d in found}
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
