"""Video tracking: prompts at frames -> the tracked objects of every frame of a range, produced
one frame (or one detector batch) at a time so a stream never holds the video.

Prompts are either texts or boxes / points / masks with object ids at frames. Texts become
boxes at the range's first frame through the object_detection task's detector, except for a
detection tracker, whose own detector takes them as queries on every frame (so objects that
enter later are tracked too). Frames are decoded lazily, one chunk ahead of inference; blocking
work runs in the manager's inference pool; the session's memory is reserved in the ledger.
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
from typing import TypeVar

import anyio
import numpy as np
import supervision as sv

from zooserve.errors import ConfigError, InvalidInput
from zooserve.families.base import Detector, ModelAdapter
from zooserve.families.bytetrack.detection_tracker import DetectionTracker
from zooserve.families.kinds import TrackedObject, Tracker, TrackPrompt
from zooserve.inference import retrieve_outcome
from zooserve.manager import ModelManager
from zooserve.media import Frame, MediaSource, resolve_media_path
from zooserve.pipelines.detect import detect, require_kind
from zooserve.pipelines.selection import label_for, plain, selected_model, vocabulary
from zooserve.pipelines.track_prompts import check_geometry, check_range, split_prompts
from zooserve.pipelines.track_sessions import TrackingSessions
from zooserve.rle import Rle, encode_mask

TASK = "video_tracking"
#: At most this many objects come from text prompts (highest scores first).
MAX_TEXT_OBJECTS = 16
log = logging.getLogger("zooserve.pipelines.track")
T = TypeVar("T")


@dataclass(frozen=True)
class FrameRange:
    start: int
    end: int  # inclusive


@dataclass(frozen=True)
class ObjectInFrame:
    object_id: int
    box: tuple[float, float, float, float]  # xyxy px
    score: float
    occluded: bool
    mask: Rle | None  # COCO RLE, or None for box-only trackers and hidden objects


@dataclass(frozen=True)
class TrackedFrame:
    frame_number: int
    timestamp: float  # seconds
    objects: list[ObjectInFrame]


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
) -> AsyncGenerator[TrackedFrame, None]:
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
        start, end = check_range(source, frame_range.start, frame_range.end)
        if max_frames is not None and end - start + 1 > max_frames:
            raise InvalidInput(
                f"frame_range covers {end - start + 1} frames; a non-streamed request may cover "
                f"{max_frames} (max_track_frames): stream it (stream: true) or split the range",
                {"frames": end - start + 1, "limit": max_frames},
            )
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
        if texts and not by_detection:  # before the tracker loads: one model at a time fits
            geometric = await _prompts_from_text(
                manager, video_path, start, texts, confidence_threshold
            )
        # The tracker and its detector are one plan: admitted together or not at all, so the
        # request never holds one while it waits for room for the other.
        plan = [name, *([_detector_name(manager, name)] if by_detection else [])]
        async with contextlib.AsyncExitStack() as stack:
            leased = await stack.enter_async_context(manager.use_all(plan))
            tracker = _as_tracker(name, leased[name])
            detector: Detector | None = None
            if isinstance(tracker, DetectionTracker):
                report.detector = plan[1]
                detector = _as_detector(report.detector, leased[report.detector])
            queries, labels = _queries(manager, tracker, detector, texts)
            started_session = await _finish(
                manager.infer(tracker.start, geometric, source.width, source.height)
            )
            key = await sessions.open(
                f"tracking {video_path} [{start}..{end}] with {name}",
                started_session,
                tracker.session_bytes(started_session),
                holds=plan,
            )
            del started_session  # held by `sessions` alone: its claim lives as long as it

            @stack.callback
            def end_session() -> None:
                report.peak_session_bytes = sessions.peak(key)
                sessions.close(key)

            size = _batch_size(manager, report.detector) if detector else 1
            chunks = _decoded_chunks(decoder, source, start, end, size)
            async for chunk in await stack.enter_async_context(contextlib.aclosing(chunks)):
                frames, nbytes = await _finish(
                    manager.infer(
                        _run_chunk,
                        tracker,
                        sessions.session(key),
                        chunk,
                        detector,
                        queries,
                        labels,
                        confidence_threshold,
                    )
                )
                await sessions.update(key, nbytes)
                for frame in frames:
                    report.frames += 1
                    yield frame
    finally:
        decoder.submit(source.close)
        decoder.shutdown(wait=False)
        report.processing_time = time.perf_counter() - started


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


def _run_chunk(
    tracker: Tracker,
    session: object,
    chunk: list[Frame],
    detector: Detector | None,
    queries: list[str] | None,
    labels: set[str] | None,
    threshold: float,
) -> tuple[list[TrackedFrame], int]:
    """Blocking: (detect and) step every frame of the chunk; masks leave as RLE."""
    if isinstance(tracker, DetectionTracker):
        assert detector is not None
        found = detector.detect([f.image for f in chunk], queries, threshold)
        results = [
            tracker.step_with_detections(session, f.number, _keep_labels(d, labels))  # type: ignore[arg-type]
            for f, d in zip(chunk, found, strict=True)
        ]
    else:
        results = [tracker.step(session, f.number, f.image) for f in chunk]
    frames = [
        TrackedFrame(f.number, f.timestamp, [_encoded(o) for o in objects])
        for f, objects in zip(chunk, results, strict=True)
    ]
    return frames, tracker.session_bytes(session)


def _encoded(obj: TrackedObject) -> ObjectInFrame:
    mask = encode_mask(obj.mask) if obj.mask is not None else None
    box = _as_box([round(float(v), 2) for v in obj.box])
    return ObjectInFrame(obj.object_id, box, round(float(obj.score), 4), obj.occluded, mask)


def _as_box(values: Sequence[float] | np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


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
    manager: ModelManager, video_path: str, frame: int, texts: list[str], threshold: float
) -> list[TrackPrompt]:
    """Boxes of the texts at `frame` from the object_detection task's detector, ids 1..N."""
    result = await detect(
        manager, video_path, [frame], confidence_threshold=threshold, prompts=texts
    )
    found = result.frames[0].detections
    if result.prompts is None:  # closed vocabulary: keep the classes the texts name
        found = _keep_labels(found, _labels(manager, result.model, texts))
    if len(found) == 0:
        raise InvalidInput(
            f"{result.model} found no {', '.join(map(repr, texts))} at frame {frame} above "
            f"confidence {threshold}; lower confidence_threshold or prompt with boxes",
            {"detector": result.model, "frame": frame, "texts": texts},
        )
    order = np.argsort(-np.asarray(found.confidence))[:MAX_TEXT_OBJECTS]
    return [
        TrackPrompt(object_id=i + 1, frame_number=frame, box=_as_box(found.xyxy[row]))
        for i, row in enumerate(order)
    ]


def _queries(
    manager: ModelManager, tracker: Tracker, detector: Detector | None, texts: list[str]
) -> tuple[list[str] | None, set[str] | None]:
    """(queries for an open-vocabulary detector, class names a closed-vocabulary one keeps)."""
    if detector is None:
        return None, None
    if not detector.open_vocabulary:
        return None, _labels(manager, detector.spec.name, texts) or None
    assert isinstance(tracker, DetectionTracker)
    return texts or tracker.queries or list(manager.config.default_prompts), None


def _labels(manager: ModelManager, detector: str, texts: list[str]) -> set[str]:
    """The detector's class names the texts ask for ("people" -> "person"), normalised."""
    known = vocabulary(manager, detector) or frozenset()
    return {plain(label_for(t, known) or t) for t in texts}


def _keep_labels(detections: sv.Detections, labels: set[str] | None) -> sv.Detections:
    if labels is None or len(detections) == 0:
        return detections
    names = detections.data.get("class_name")
    if names is None:
        return detections
    keep = np.array([plain(str(n)) in labels for n in names], dtype=bool)
    return detections[keep]  # type: ignore[return-value]


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


def _batch_size(manager: ModelManager, name: str | None) -> int:
    if name is None:
        return 1
    return max(1, int(manager.state(name).spec.options.get("batch_size", 4)))


def _as_tracker(name: str, adapter: ModelAdapter) -> Tracker:
    if not isinstance(adapter, Tracker):
        raise InvalidInput(f"model {name!r} is a {adapter.kind}, not a tracker")
    return adapter


def _as_detector(name: str, adapter: ModelAdapter) -> Detector:
    if not isinstance(adapter, Detector):
        raise ConfigError(f"detector {name!r} of a detection tracker is a {adapter.kind}")
    return adapter
