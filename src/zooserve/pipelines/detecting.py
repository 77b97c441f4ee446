"""What the pipelines share about the models they lease: the batch size, the kind checks, a
detector's text queries and the labels a closed vocabulary keeps, and a detector run over frames
of a source the request already has open (detect's frames, track's first frame for texts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import supervision as sv

from zooserve.catalog import ModelSpec
from zooserve.core.errors import ConfigError, FamilyNotImplemented, InvalidInput
from zooserve.families import adapter_class
from zooserve.families.base import Detector, ModelAdapter
from zooserve.families.results import FrameDetections
from zooserve.manager import ModelManager
from zooserve.media import Frame
from zooserve.pipelines.selection import label_for, plain, spellings, vocabulary
from zooserve.runtimes.inference import retrieve_outcome

#: Frames per detector call when `options.batch_size` is unset.
DEFAULT_BATCH_SIZE = 4
A = TypeVar("A", bound=ModelAdapter)
#: Decodes the given frame numbers off the event loop (on whichever thread owns the source).
ReadFrames = Callable[[list[int]], Awaitable[list[Frame]]]


def batch_size(spec: ModelSpec, default: int = DEFAULT_BATCH_SIZE) -> int:
    """Inputs per model call: the model's `options.batch_size`, at least 1."""
    return max(1, int(spec.options.get("batch_size", default)))


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


def leased_as(name: str, adapter: ModelAdapter, kind: type[A], *, linked_by: str = "") -> A:
    """The leased adapter as `kind`. A model the caller chose is the caller's mistake (422); one
    another model links in the config (`linked_by`, e.g. a tracker's detector) is a config
    error."""
    if isinstance(adapter, kind):
        return adapter
    if linked_by:
        raise ConfigError(f"{kind.kind} {name!r} of {linked_by} is a {adapter.kind}")
    raise InvalidInput(f"model {name!r} is a {adapter.kind}, not a {kind.kind}")


def detector_queries(
    manager: ModelManager,
    detector: Detector,
    texts: Sequence[str] | None,
    fallback: Sequence[str] | None = None,
) -> list[str] | None:
    """Text queries for an open-vocabulary detector: the texts, else `fallback`, else the
    config's default prompts; None for a closed vocabulary (it reports its own classes)."""
    if not detector.open_vocabulary:
        return None
    given = texts or fallback or manager.config.default_prompts
    queries = [t.strip() for t in given if t.strip()]
    if not queries:
        raise InvalidInput("prompts must contain at least one non-empty text query")
    return queries


def wanted_labels(manager: ModelManager, detector: str, texts: Sequence[str]) -> set[str] | None:
    """The closed-vocabulary detector's class names the texts ask for ("people" -> "person"),
    normalised; None (keep every class) without texts. Where the config does not list the
    classes (they are in the checkpoint), every spelling a text may mean is kept."""
    if not texts:
        return None
    known = vocabulary(manager, detector) or frozenset()
    wanted: set[str] = set()
    for text in texts:
        label = label_for(text, known)
        wanted.update([label] if label else spellings(text))
    return wanted


def keep_labels(detections: sv.Detections, labels: set[str] | None) -> sv.Detections:
    """The detections whose class is among `labels` (all of them when `labels` is None)."""
    if labels is None or len(detections) == 0:
        return detections
    names = detections.data.get("class_name")
    if names is None:
        return detections
    keep = np.array([plain(str(n)) in labels for n in names], dtype=bool)
    return detections[keep]  # type: ignore[return-value]


def batches(numbers: Sequence[int], size: int) -> list[list[int]]:
    """The frames of one detector call each: first one frame alone, then `size` at a time. The
    first batch's decode is the one nothing overlaps, so inference starts after one frame's
    decode rather than a whole batch's (issue #18: 8 spread frames of bikes.mp4, YOLO11n on
    the CPU, pipeline / adapter on the same batches 0.90-0.92 -> 0.955-0.988)."""
    if not numbers:
        return []
    rest = list(numbers[1:])
    return [[numbers[0]]] + [rest[i : i + size] for i in range(0, len(rest), size)]


async def detect_frames(
    manager: ModelManager,
    name: str,
    numbers: Sequence[int],
    read: ReadFrames,
    *,
    threshold: float,
    prompts: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[FrameDetections], list[str] | None]:
    """Lease detector `name` once and run it over frames `numbers` (ascending, distinct) in
    batches; returns the frames' results and the queries used (None: closed vocabulary).

    An open-vocabulary detector takes the prompts as its queries; a closed-vocabulary one
    (RF-DETR, YOLO, Darknet YOLO, ...) reports its own classes, of which the prompts keep the
    ones they name ("people" keeps "person"); without prompts every class is kept.

    Decoding runs one batch ahead (`batches`): the first while the model loads, the next while
    the current one is inferred. Only results are kept, so a request holds at most two batches
    of pixels.
    `progress(done, total)` is called after each batch.
    """
    chunks = batches(numbers, batch_size(manager.state(name).spec))
    decoding: asyncio.Future[list[Frame]] = asyncio.ensure_future(read(chunks[0]))
    found: list[FrameDetections] = []
    try:
        async with manager.use(name) as leased:
            detector = leased_as(name, leased, Detector)  # type: ignore[type-abstract]
            queries = detector_queries(manager, detector, prompts)
            labels = None if queries is not None else wanted_labels(manager, name, prompts or [])
            for index in range(len(chunks)):
                chunk = await decoding
                if index + 1 < len(chunks):
                    decoding = asyncio.ensure_future(read(chunks[index + 1]))
                results = await manager.infer_batched(
                    detector.detect, [f.image for f in chunk], queries, threshold
                )
                found += [
                    FrameDetections(f.number, f.timestamp, keep_labels(d, labels))
                    for f, d in zip(chunk, results, strict=True)
                ]
                del chunk
                if progress:
                    progress(len(found), len(numbers))
    finally:
        decoding.add_done_callback(retrieve_outcome)
    return found, queries
