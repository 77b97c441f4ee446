"""Enrichment: the zoo's triggers over the detections of a batch of frames, model-major.

The whole batch is planned first (zooserve.catalog.zoo.plan_steps); then each model is leased once
(`async with manager.use(name)`) and run over every input of its triggers through
`manager.infer`, chained stages after their sources. With a budget that fits one model, a batch
needing five models performs five loads; the naive order (`order="per_detection"`: each
detection's whole chain in turn) is kept to measure that against.

A model that is missing, cannot load or fails is reported in `errors` and its dependants are
skipped with a reason; the rest of the batch is still enriched.

    result = await enrich(manager, "samples/bikes.mp4", [0, 60, 120])
    car = result.frames[0].detections.data["enrichments"][0]  # the first detection's values
    plates = car["plates"]  # sv.Detections found on its crop, in frame pixels
    plates.data["enrichments"][0]["plate_text"]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import supervision as sv

from zooserve.catalog.zoo import PRIMARY, TriggerSpec, plan_steps, select_triggers
from zooserve.core.errors import (
    BudgetExceeded,
    FamilyNotImplemented,
    InvalidInput,
    MissingDependency,
    ModelLoadFailed,
    ModelUnavailable,
    ServiceBusy,
)
from zooserve.manager import ModelManager
from zooserve.media import Frame, MediaSource, check_decoded_size, resolve_media_path
from zooserve.pipelines.detect import detect
from zooserve.pipelines.enrich_results import (
    FrameEnrichment,
    LoadRecord,
    StageError,
    StageReport,
    events_since,
    last_event,
    load_record,
)
from zooserve.pipelines.enrich_run import EnrichRun

__all__ = [
    "EnrichResult",
    "FrameEnrichment",
    "LoadRecord",
    "Order",
    "StageError",
    "StageReport",
    "enrich",
    "enrich_frames",
]

Order = Literal["model_major", "per_detection"]
#: Failures of the primary detector that are reported in `errors` rather than raised: the
#: batch-wide triggers (weather, quality, action) still run without detections.
_DETECTOR_FAILURES = (
    ModelUnavailable,
    ModelLoadFailed,
    BudgetExceeded,
    ServiceBusy,
    MissingDependency,
    FamilyNotImplemented,
)


@dataclass
class EnrichResult:
    frames: list[FrameEnrichment]  # ascending frame number
    batch: dict[str, Any]  # output -> aggregate over the batch (batch-scope triggers)
    clip: dict[str, Any]  # output -> value for the frames as one clip (clip-scope triggers)
    errors: list[StageError]
    loads: list[LoadRecord]  # one per lease, in the order taken
    stages: list[StageReport]  # one per selected trigger, in config order
    processing_time: float  # seconds
    detector: str | None  # the primary detector run, None when the caller gave detections
    order: Order


@dataclass
class _Primary:
    """How the primary detections came about: from the caller, or from a detector run (its
    lease, and its error when it failed: then `detections` is None)."""

    detections: Mapping[int, sv.Detections] | None
    detector: str | None = None
    errors: list[StageError] = field(default_factory=list)
    loads: list[LoadRecord] = field(default_factory=list)


async def enrich_frames(
    manager: ModelManager,
    frames: Sequence[Frame],
    detections: Mapping[int, sv.Detections],
    *,
    triggers: Sequence[str] | None = None,
    include_embeddings: bool = False,
    prompts: Sequence[str] | None = None,
    order: Order = "model_major",
) -> EnrichResult:
    """Enrich decoded frames given their primary detections (frame number -> detections with
    `data["class_name"]`; frames without an entry have none).

    `triggers` names the triggers to run (default: every enabled one); the sources they chain
    from run too. `prompts`: text queries for open-vocabulary detector triggers without labels.
    """
    return await _enrich(
        manager,
        frames,
        _Primary(detections),
        select_triggers(manager.config.zoo.triggers, triggers),
        include_embeddings=include_embeddings,
        prompts=prompts,
        order=order,
    )


async def _enrich(
    manager: ModelManager,
    frames: Sequence[Frame],
    primary: _Primary,
    selected: list[TriggerSpec],
    *,
    include_embeddings: bool,
    prompts: Sequence[str] | None,
    order: Order,
) -> EnrichResult:
    started = time.perf_counter()
    found = None
    if primary.detections is not None:
        found = [primary.detections.get(f.number, sv.Detections.empty()) for f in frames]
    run = EnrichRun(
        manager,
        frames,
        found,
        selected,
        include_embeddings=include_embeddings,
        prompts=prompts,
        check_boxes=primary.detector is None,
    )
    steps = plan_steps(selected)
    if order == "model_major":
        for step in steps:
            await run.execute(step)
    else:  # each detection's chain, then each frame's triggers, then the batch's
        for root in run.layers.refs(PRIMARY):
            for step in steps:
                await run.execute(step, ("detection", root))
        for index in range(len(frames)):
            for step in steps:
                await run.execute(step, ("frame", index))
        for step in steps:
            await run.execute(step, ("batch", None))
    return EnrichResult(
        frames=run.frames,
        batch=run.batch,
        clip=run.clip,
        errors=[*primary.errors, *run.errors],
        loads=[*primary.loads, *run.loads],
        stages=[run.reports[t.name] for t in selected],
        processing_time=time.perf_counter() - started,
        detector=primary.detector,
        order=order,
    )


async def enrich(
    manager: ModelManager,
    video_path: str,
    frame_numbers: Sequence[int] | None = None,
    *,
    sampling: tuple[str, int] | None = None,
    detections: Mapping[int, sv.Detections] | None = None,
    model: str | None = None,
    confidence_threshold: float = 0.3,
    prompts: Sequence[str] | None = None,
    triggers: Sequence[str] | None = None,
    include_embeddings: bool = False,
    order: Order = "model_major",
) -> EnrichResult:
    """Decode frames of a video (or image) under media_root and enrich them.

    Frames: `frame_numbers`, or `sampling=(strategy, count)`, or else the frames of the given
    `detections`, or else frame 0. Primary detections: the caller's (frame number ->
    `sv.Detections` with `data["class_name"]`), or else the selected detector's (`model`,
    `confidence_threshold`, `prompts`), run only when a trigger needs detections.
    """
    started = time.perf_counter()
    if frame_numbers is not None and sampling is not None:
        raise InvalidInput("give frame_numbers or sampling, not both")
    selected = select_triggers(manager.config.zoo.triggers, triggers)
    path = resolve_media_path(manager.config.media_dir, video_path)
    with await asyncio.to_thread(
        MediaSource.open, path, max_pixels=manager.config.max_frame_pixels
    ) as source:
        limit = manager.config.max_frames_per_request
        if sampling is not None:  # a sample one past the limit is refused as surely, and cheaply
            count = min(sampling[1], limit + 1)
            numbers = await asyncio.to_thread(source.sample, sampling[0], count)
        elif frame_numbers is not None:
            numbers = sorted(set(frame_numbers))
        else:
            numbers = sorted(detections) if detections else [0]
        if len(numbers) > limit:
            raise InvalidInput(
                f"{len(numbers)} frames requested; the limit is {limit}", {"limit": limit}
            )
        source.validate(numbers)
        check_decoded_size(source, len(numbers), manager.config.max_decoded_mb)
        stray = sorted(set(detections or {}) - set(numbers))
        if stray:
            raise InvalidInput(
                f"detections given for frames {stray}, which are not among the frames "
                f"to enrich {numbers}",
                {"frames": stray},
            )
        frames = await asyncio.to_thread(source.read, numbers)

    primary = _Primary(detections if detections is not None else {})
    needs_detections = any(t.needs_detections for t in selected if t.source == PRIMARY)
    if detections is None and needs_detections:
        primary = await _detect(manager, video_path, numbers, model, confidence_threshold, prompts)
    result = await _enrich(
        manager,
        frames,
        primary,
        selected,
        include_embeddings=include_embeddings,
        prompts=prompts,
        order=order,
    )
    result.processing_time = time.perf_counter() - started
    return result


async def _detect(
    manager: ModelManager,
    video_path: str,
    numbers: list[int],
    model: str | None,
    confidence_threshold: float,
    prompts: Sequence[str] | None,
) -> _Primary:
    """The detect pipeline's detections; a detector that cannot load is reported, not raised."""
    marker = last_event(manager)
    try:
        found = await detect(
            manager,
            video_path,
            numbers,
            model=model,
            confidence_threshold=confidence_threshold,
            prompts=prompts,
        )
    except _DETECTOR_FAILURES as exc:
        spec = manager.config.tasks.get("object_detection")
        name = model or (spec.selected if spec else "?")
        record = load_record(name, ["detect"], events_since(manager, marker))
        record.failed = True
        return _Primary(None, name, [StageError("detect", name, exc.code, exc.message)], [record])
    record = load_record(found.model, ["detect"], events_since(manager, marker))
    detections = {f.frame_number: f.detections for f in found.frames}
    return _Primary(detections, found.model, [], [record])
