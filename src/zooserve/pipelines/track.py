"""Video tracking: prompts at frames -> the tracked objects of every frame of a range, produced
one frame (or one detector batch) at a time so a stream never holds the video.

Prompts are either texts or boxes / points / masks with object ids at frames. Texts become
boxes at the range's first frame through the object_detection task's detector, except for a
detection tracker, whose own detector takes them as queries on every frame (so objects that
enter later are tracked too), and except for a concept tracker (SAM 3), which finds and
tracks every instance of the texts itself. The video is opened once: the text prompts'
detector reads its frame from the same source the tracker then walks. Frames are decoded
lazily, one chunk ahead of inference; blocking work runs in the manager's inference pool; the
session's memory is reserved in the ledger. Each frame leaves as a `FrameDetections`
(tracker_id = object id, masks as bool arrays); the API's serializer encodes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import numpy as np

from zooserve.core.errors import ConfigError, InvalidInput
from zooserve.families.base import Detector
from zooserve.families.bytetrack.detection_tracker import DetectionTracker
from zooserve.families.kinds import ConceptTracker, Tracker, TrackPrompt
from zooserve.families.results import FrameDetections
from zooserve.manager import ModelManager
from zooserve.media import Frame, MediaSource, resolve_media_path
from zooserve.pipelines.detecting import (
    ReadFrames,
    batch_size,
    detect_frames,
    detector_queries,
    keep_labels,
    leased_as,
    require_kind,
    wanted_labels,
)
from zooserve.pipelines.selection import DETECTION, selected_model
from zooserve.pipelines.track_prompts import check_geometry, check_range, split_prompts
from zooserve.pipelines.track_sessions import TrackingSessions
from zooserve.runtimes.inference import retrieve_outcome

TASK = "video_tracking"
#: At most this many objects come from text prompts (highest scores first).
MAX_TEXT_OBJECTS = 16
log = logging.getLogger("zooserve.pipelines.track")
T = TypeVar("T")


@dataclass(frozen=True)
class FrameRange:
    start: int
    end: int  # inclusive


@dataclass
class TrackReport:
    """Filled in by `track` as it runs (model and video before the first frame)."""

    model: str = ""
    detector: str | None = None
    texts: list[str] = field(default_factory=list)
    width: int = 0
    height: int = 0
    fps: float = 0.0
    frame_count: int = 0
    frames: int = 0  # frames produced so far
    processing_time: float = 0.0  # seconds, set when the run ends
    peak_session_bytes: int = 0


async def track(
    manager: ModelManager,
    video_path: str,
    frame_range: FrameRange,
    *,
    prompts: Sequence[str | TrackPrompt],
    tracking_model: str | None = None,
    confidence_threshold: float = 0.3,
    report: TrackReport | None = None,
    sessions: TrackingSessions | None = None,
    max_frames: int | None = None,
) -> AsyncGenerator[FrameDetections, None]:
    """Yield the tracked objects of frames start..end (inclusive), in order.

    Every caller mistake (prompts, range, paths) raises before the first frame is yielded.
    `max_frames` bounds the range for callers that collect every frame (non-streamed
    requests, jobs); a stream holds one chunk at a time and needs no bound.
    """
    started = time.perf_counter()
    report = report if report is not None else TrackReport()
    sessions = sessions if sessions is not None else TrackingSessions(manager)
    texts, geometric = split_prompts(prompts)
    name = selected_model(manager, TASK, tracking_model, texts)
    path = resolve_media_path(manager.config.media_dir, video_path)
    source = await asyncio.to_thread(
        MediaSource.open, path, max_pixels=manager.config.max_frame_pixels
    )
    # One decode thread per request: closing the video is queued behind any decode still
    # running, so a request that goes away never closes the container under its decoder.
    decoder = ThreadPoolExecutor(1, thread_name_prefix="zooserve-decode")
    try:
        start, end = check_range(source, frame_range.start, frame_range.end, max_frames)
        # Masks are decoded here, off the event loop, and only once their size matches the
        # frame: a tiny JSON body cannot make the server allocate gigabytes.
        geometric = await asyncio.to_thread(
            check_geometry, geometric, source.width, source.height, start, end
        )
        report.model, report.texts = name, texts
        report.width, report.height, report.fps = source.width, source.height, source.fps
        report.frame_count = source.frame_count
        family = require_kind(manager, name, Tracker)
        by_detection = family is not None and issubclass(family, DetectionTracker)
        by_concept = family is not None and issubclass(family, ConceptTracker)
        if texts and not (by_detection or by_concept):  # before the tracker loads
            read = _reader(decoder, source)
            geometric = await _prompts_from_text(manager, read, start, texts, confidence_threshold)
        plan = [name, *([_detector_name(manager, name)] if by_detection else [])]
        async with contextlib.AsyncExitStack() as stack:
            reason = f"tracking {video_path} [{start}..{end}] with {name}"
            run = await _start(stack, manager, sessions, plan, report, geometric, reason)
            run.threshold = confidence_threshold
            chunks = _decoded_chunks(decoder, source, start, end, run.batch)
            async for chunk in await stack.enter_async_context(contextlib.aclosing(chunks)):
                step = manager.infer(run.step_chunk, sessions.session(run.key), chunk)
                frames, nbytes = await _finish(step)
                await sessions.update(run.key, nbytes)
                for frame in frames:
                    report.frames += 1
                    yield frame
    finally:
        decoder.submit(source.close)
        decoder.shutdown(wait=False)
        report.processing_time = time.perf_counter() - started


@dataclass
class _Run:
    """What a request's frames go through: the leased tracker (with a detection tracker, its
    detector, queries or kept labels and batch size) and the session's key in the ledger."""

    tracker: Tracker
    key: str = ""
    detector: Detector | None = None
    queries: list[str] | None = None
    labels: set[str] | None = None
    threshold: float = 0.3
    batch: int = 1

    def step_chunk(self, session: object, chunk: list[Frame]) -> tuple[list[FrameDetections], int]:
        """Blocking: (detect and) step every frame of the chunk; the session's bytes after."""
        if self.detector is not None:
            assert isinstance(self.tracker, DetectionTracker)
            images = [f.image for f in chunk]
            found = self.detector.detect(images, self.queries, self.threshold)
            results = [
                self.tracker.step_with_detections(session, f.number, keep_labels(d, self.labels))  # type: ignore[arg-type]
                for f, d in zip(chunk, found, strict=True)
            ]
        else:
            results = [self.tracker.step(session, f.number, f.image) for f in chunk]
        frames = [
            FrameDetections(f.number, f.timestamp, d) for f, d in zip(chunk, results, strict=True)
        ]
        return frames, self.tracker.session_bytes(session)


async def _start(
    stack: contextlib.AsyncExitStack[Any],
    manager: ModelManager,
    sessions: TrackingSessions,
    plan: list[str],
    report: TrackReport,
    prompts: list[TrackPrompt],
    reason: str,
) -> _Run:
    """Lease the plan, open the tracker's session and reserve its bytes until `stack` closes.

    The tracker and its detector are one plan: admitted together or not at all, so the request
    never holds one while it waits for room for the other.
    """
    leased = await stack.enter_async_context(manager.use_all(plan))
    tracker = leased_as(plan[0], leased[plan[0]], Tracker)  # type: ignore[type-abstract]
    run = _Run(tracker)
    if isinstance(run.tracker, DetectionTracker):
        report.detector, linked_by = plan[1], "a detection tracker"
        detector = leased_as(plan[1], leased[plan[1]], Detector, linked_by=linked_by)  # type: ignore[type-abstract]
        run.detector = detector
        run.queries = detector_queries(manager, run.detector, report.texts, run.tracker.queries)
        run.labels = None if run.queries else wanted_labels(manager, plan[1], report.texts)
        run.batch = batch_size(manager.state(plan[1]).spec)
    width, height = report.width, report.height
    if report.texts and isinstance(run.tracker, ConceptTracker):  # it finds the texts itself
        opened = manager.infer(run.tracker.start_concepts, report.texts, width, height)
        started_session = await _finish(opened)
    else:
        started_session = await _finish(manager.infer(run.tracker.start, prompts, width, height))
    nbytes = run.tracker.session_bytes(started_session)
    run.key = await sessions.open(reason, started_session, nbytes, holds=plan)
    del started_session  # held by `sessions` alone: its claim lives as long as it

    @stack.callback
    def end_session() -> None:
        report.peak_session_bytes = sessions.peak(run.key)
        sessions.close(run.key)

    return run


async def _finish(work: Awaitable[T]) -> T:
    """Await work running in a worker thread; if the request is cancelled meanwhile, still
    wait for it to end before going on: it uses the leased models and the session."""
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True):  # Starlette cancels a dropped stream via anyio
            await asyncio.wait([future])
        raise


def _reader(decoder: Executor, source: MediaSource) -> ReadFrames:
    """Reads frames of `source` on the request's decode thread (the one that closes it)."""
    loop = asyncio.get_running_loop()
    return lambda numbers: loop.run_in_executor(decoder, source.read, numbers)


async def _decoded_chunks(
    decoder: Executor, source: MediaSource, start: int, end: int, size: int
) -> AsyncGenerator[list[Frame], None]:
    """Frames start..end in chunks of `size`, the next chunk decoding while this one is used."""
    frames: Iterator[Frame] = source.iter_range(start, end)
    loop = asyncio.get_running_loop()

    def take() -> list[Frame]:
        return list(itertools.islice(frames, size))

    pending = loop.run_in_executor(decoder, take)
    try:
        while chunk := await pending:
            pending = loop.run_in_executor(decoder, take)
            yield chunk
    finally:  # a read-ahead nobody will use: collect its outcome so none is left unretrieved
        pending.add_done_callback(retrieve_outcome)


async def _prompts_from_text(
    manager: ModelManager, read: ReadFrames, frame: int, texts: list[str], threshold: float
) -> list[TrackPrompt]:
    """Boxes of the texts at `frame` from the object_detection task's detector, ids 1..N; the
    frame comes from the request's open video (`read`)."""
    detector = selected_model(manager, DETECTION, None, texts)
    require_kind(manager, detector, Detector)
    results, queries = await detect_frames(
        manager, detector, [frame], read, threshold=threshold, prompts=texts
    )
    found = results[0].detections
    if queries is None:  # closed vocabulary: keep the classes the texts name
        found = keep_labels(found, wanted_labels(manager, detector, texts))
    if len(found) == 0:
        raise InvalidInput(
            f"{detector} found no {', '.join(map(repr, texts))} at frame {frame} above "
            f"confidence {threshold}; lower confidence_threshold or prompt with boxes",
            {"detector": detector, "frame": frame, "texts": texts},
        )
    order = np.argsort(-np.asarray(found.confidence))[:MAX_TEXT_OBJECTS]
    return [
        TrackPrompt(object_id=i + 1, frame_number=frame, box=_as_box(found.xyxy[row]))
        for i, row in enumerate(order)
    ]


def _as_box(values: Sequence[float] | np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _detector_name(manager: ModelManager, tracker_name: str) -> str:
    """The detector a detection tracker names (`options.detector`), read from the config so
    the tracker and its detector are admitted as one plan."""
    name = manager.state(tracker_name).spec.options.get("detector")
    if not isinstance(name, str) or name not in manager.states:
        raise ConfigError(
            f"models.{tracker_name}.options.detector names {name!r}, which is not under "
            f"models: (known: {sorted(manager.states)})"
        )
    return name
