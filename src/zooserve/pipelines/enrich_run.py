"""One enrichment run: the zoo's steps over a batch of frames and their detections.

State lives here, per request: the detections each trigger produced (so chains can follow
them), which triggers failed (so their dependants are skipped with a reason), the leases taken
and the errors met. `execute(step, unit)` leases the step's model once for every input of its
triggers inside `unit`: the whole batch (model-major), or one detection / frame (naive order,
kept to measure what model-major saves).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import supervision as sv

from zooserve.catalog.zoo import PRIMARY, Step, TriggerSpec
from zooserve.core import request_context
from zooserve.core.errors import InvalidInput, MediaClosed, ZooError
from zooserve.families.base import Detector, Image, ModelAdapter
from zooserve.families.kinds import ActionRecognizer, DepthEstimator, PoseEstimator
from zooserve.manager import ModelManager
from zooserve.media import Frame
from zooserve.pipelines import enrich_kinds as kinds
from zooserve.pipelines.enrich_results import (
    Box,
    FrameEnrichment,
    LoadRecord,
    StageError,
    StageReport,
    Subject,
    events_since,
    last_event,
    load_record,
)

log = logging.getLogger("zooserve.pipelines.enrich")


#: Where a step runs: ("all", None) | ("detection", Subject) | ("frame", index) | ("batch", None)
Unit = tuple[str, Any]
ALL: Unit = ("all", None)


def crop(image: Image, box: Box, padding: float) -> tuple[Image, tuple[int, int]]:
    """The box widened by `padding` x its size on each side, clipped; and its top-left corner."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left = min(width - 1, max(0, math.floor(x1 - pad_x)))
    top = min(height - 1, max(0, math.floor(y1 - pad_y)))
    right = max(left + 1, min(width, math.ceil(x2 + pad_x)))
    bottom = max(top + 1, min(height, math.ceil(y2 + pad_y)))
    return np.ascontiguousarray(image[top:bottom, left:right]), (left, top)


def fit(box: Box, width: int, height: int) -> Box:
    """The box clipped to the frame, at least one pixel wide and high (detectors may return
    boxes of zero width at the frame's edge)."""
    x1 = min(max(0.0, box[0]), width - 1.0)
    y1 = min(max(0.0, box[1]), height - 1.0)
    return (x1, y1, max(x1 + 1.0, min(box[2], float(width))), max(y1 + 1.0, min(box[3], height)))


class EnrichRun:
    """The state of one request's enrichment; see the module docstring."""

    def __init__(
        self,
        manager: ModelManager,
        frames: Sequence[Frame],
        detections: Sequence[sv.Detections] | None,
        triggers: Sequence[TriggerSpec],
        *,
        include_embeddings: bool = False,
        prompts: Sequence[str] | None = None,
        check_boxes: bool = True,
    ) -> None:
        """`check_boxes`: the detections are the caller's, so an empty box or one outside its
        frame is a 422; a detector's boxes are clipped to the frame instead."""
        self.manager = manager
        self.triggers = list(triggers)
        self.include_embeddings = include_embeddings
        self.prompts = list(prompts or manager.config.default_prompts)
        self.images = [f.image for f in frames]
        self.frames = [
            FrameEnrichment(f.number, f.timestamp, f.image.shape[1], f.image.shape[0], [])
            for f in frames
        ]
        self.produced: dict[str, list[Subject]] = {PRIMARY: []}
        self.failed: dict[str, str] = {}  # trigger (or PRIMARY) -> why
        self.detecting: set[str] = {PRIMARY}  # triggers whose model produced detections
        self.reports = {t.name: StageReport(t.name, t.model, t.scope) for t in self.triggers}
        self.errors: list[StageError] = []
        self.loads: list[LoadRecord] = []
        self.batch: dict[str, Any] = {}
        self.clip: dict[str, Any] = {}
        if detections is None:
            self.failed[PRIMARY] = "the primary detector failed"
        else:
            for index, found in enumerate(detections):
                self._add_primary(index, found, check_boxes)

    def _add_primary(self, index: int, found: sv.Detections, check_boxes: bool) -> None:
        frame = self.frames[index]
        names = found.data.get("class_name", [""] * len(found))
        scores = found.confidence if found.confidence is not None else np.ones(len(found))
        for i, (box, score, label) in enumerate(zip(found.xyxy, scores, names, strict=True)):
            x1, y1, x2, y2 = (float(v) for v in box)
            inside = x1 < frame.width and y1 < frame.height and x2 > 0 and y2 > 0
            if check_boxes and not (x2 > x1 and y2 > y1 and inside):
                raise InvalidInput(
                    f"detection {i} of frame {frame.frame_number}: box {[x1, y1, x2, y2]} is "
                    f"empty or outside the {frame.width}x{frame.height} frame",
                    {"frame_number": frame.frame_number, "index": i},
                )
            subject = Subject(
                index, str(label), float(score), fit((x1, y1, x2, y2), frame.width, frame.height)
            )
            frame.detections.append(subject)
            self.produced[PRIMARY].append(subject)

    # --- which inputs a trigger has -------------------------------------------------------

    def _matching(self, trigger: TriggerSpec) -> list[Subject]:
        return [
            s
            for s in self.produced.get(trigger.source, [])
            if trigger.when.matches(s.label, s.confidence)
        ]

    def _frames_meeting(self, trigger: TriggerSpec) -> list[int]:
        counts = Counter(s.frame for s in self._matching(trigger))
        return [i for i in range(len(self.frames)) if counts[i] >= trigger.min_count]

    def inputs(self, trigger: TriggerSpec, unit: Unit) -> list[Any]:
        """Subjects (scope detection) or frame indices (other scopes) the trigger runs on."""
        where, value = unit
        if trigger.scope == "detection":
            if where == "batch":
                return []
            meeting = set(self._frames_meeting(trigger))
            subjects = [s for s in self._matching(trigger) if s.frame in meeting]
            if where == "detection":
                return [s for s in subjects if s.root() is value]
            if where == "frame":
                return [s for s in subjects if s.frame == value and s.root().source != PRIMARY]
            return subjects
        if trigger.scope == "frame":
            frames = self._frames_meeting(trigger)
            if where == "frame":
                return [value] if value in frames else []
            return frames if where == "all" else []
        if where not in ("all", "batch") or not self._frames_meeting(trigger):
            return []
        return list(range(len(self.frames)))

    def _blocked(self, trigger: TriggerSpec) -> bool:
        """True (recording why once) when the trigger cannot run: its source failed, or it
        ran a model that found no detections to feed this trigger."""
        source = trigger.source
        reason: str | None = None
        code = "dependency_failed"
        if source in self.failed and (source != PRIMARY or trigger.needs_detections):
            reason = f"skipped: source {source!r} failed ({self.failed[source]})"
        elif (
            source != PRIMARY
            and self.reports[source].status == "ok"
            and source not in self.detecting
        ):
            code = "invalid_trigger"
            reason = (
                f"source trigger {source!r} runs {self.reports[source].model!r}, which "
                "is not a detector; only detector triggers can feed others"
            )
        if reason is None:
            return False
        if trigger.name not in self.failed:
            self._fail(trigger, code, reason, status="skipped")
        return True

    def _fail(self, trigger: TriggerSpec, code: str, message: str, status: str = "failed") -> None:
        report = self.reports[trigger.name]
        if trigger.name not in self.failed:
            self.errors.append(StageError(trigger.name, trigger.model, code, message))
            report.status, report.reason = status, message
        self.failed.setdefault(trigger.name, code)

    # --- running a step -------------------------------------------------------------------

    async def execute(self, step: Step, unit: Unit = ALL) -> None:
        """Lease the step's model once for all its triggers' inputs within `unit`."""
        work = [
            (t, f) for t in step.triggers if not self._blocked(t) and (f := self.inputs(t, unit))
        ]
        if not work:
            return
        await request_context.stop_if_client_left(f"leasing {step.model!r}")
        marker = last_event(self.manager)
        stages = [t.name for t, _ in work]
        acquired = False
        try:
            async with self.manager.use(step.model) as adapter:
                acquired = True
                self.loads.append(
                    load_record(step.model, stages, events_since(self.manager, marker))
                )
                for trigger, found in work:
                    await self._apply(adapter, trigger, found)
        except Exception as exc:
            if acquired or isinstance(exc, MediaClosed):
                raise
            self.loads.append(load_record(step.model, stages, events_since(self.manager, marker)))
            self.loads[-1].failed = True
            code = exc.code if isinstance(exc, ZooError) else "model_load_failed"
            message = exc.message if isinstance(exc, ZooError) else f"{type(exc).__name__}: {exc}"
            for trigger, _ in work:
                self._fail(trigger, code, message)

    async def _apply(self, adapter: ModelAdapter, trigger: TriggerSpec, found: list[Any]) -> None:
        report = self.reports[trigger.name]
        started = time.perf_counter()
        try:
            if trigger.scope == "detection":
                await self._on_subjects(adapter, trigger, found)
            elif trigger.scope == "frame":
                await self._on_frames(adapter, trigger, found)
            elif trigger.scope == "batch":
                values = await self._on_frames(adapter, trigger, found)
                self.batch[trigger.output_name] = kinds.aggregate(values)
            else:
                clip = [self.images[i] for i in sorted(found, key=self._frame_number)]
                value = await kinds.action_value(self.manager, adapter, trigger, clip)
                self.clip[trigger.output_name] = value
        except MediaClosed:
            raise  # the client left: the request ends, not just this stage
        except ZooError as exc:
            self._fail(trigger, exc.code, exc.message)
        except Exception as exc:  # a model's own failure: reported, never a 500
            log.warning("trigger %s (%s) failed", trigger.name, trigger.model, exc_info=True)
            self._fail(trigger, "inference_failed", f"{type(exc).__name__}: {exc}")
        else:
            if trigger.name not in self.failed:
                report.status = "ok"
        report.inputs += len(found)
        report.seconds += time.perf_counter() - started

    def _frame_number(self, index: int) -> int:
        return self.frames[index].frame_number

    async def _on_subjects(
        self, adapter: ModelAdapter, trigger: TriggerSpec, subjects: list[Subject]
    ) -> None:
        out = trigger.output_name
        if isinstance(adapter, PoseEstimator):
            for index in sorted({s.frame for s in subjects}):
                group = [s for s in subjects if s.frame == index]
                boxes = [s.box for s in group]
                poses = await kinds.pose_values(
                    self.manager, adapter, trigger, self.images[index], boxes
                )
                for subject, value in zip(group, poses, strict=True):
                    subject.enrichments[out] = value
            return
        if isinstance(adapter, DepthEstimator):
            indices = sorted({s.frame for s in subjects})
            maps = await self._image_values(adapter, trigger, [self.images[i] for i in indices])
            depth = dict(zip(indices, maps, strict=True))
            for subject in subjects:
                subject.enrichments[out] = kinds.depth_at_box(depth[subject.frame], subject.box)
            return
        self._refuse_action(adapter, trigger)
        crops = [crop(self.images[s.frame], s.box, trigger.crop_padding) for s in subjects]
        values = await self._image_values(adapter, trigger, [image for image, _ in crops])
        for subject, (_, offset), value in zip(subjects, crops, values, strict=True):
            subject.enrichments[out] = (
                self._children(trigger, subject.frame, value, offset, subject)
                if isinstance(adapter, Detector)
                else kinds.in_frame(value, offset)  # OCR boxes: crop -> frame pixels
            )

    async def _on_frames(
        self, adapter: ModelAdapter, trigger: TriggerSpec, indices: list[int]
    ) -> list[Any]:
        if isinstance(adapter, PoseEstimator):
            raise kinds.InvalidTrigger(
                f"trigger {trigger.name!r}: pose models run on person detections "
                "(scope: detection)",
                {"trigger": trigger.name},
            )
        self._refuse_action(adapter, trigger)
        values = await self._image_values(adapter, trigger, [self.images[i] for i in indices])
        for index, raw in zip(indices, values, strict=True):
            value: Any = raw
            if isinstance(adapter, Detector):
                value = self._children(trigger, index, raw, (0, 0), None)
            elif isinstance(adapter, DepthEstimator):
                value = kinds.depth_summary(raw)
            else:
                value = kinds.in_frame(raw, (0, 0))  # labels OCR boxes as frame pixels
            self.frames[index].enrichments[trigger.output_name] = value
        return [self.frames[i].enrichments[trigger.output_name] for i in indices]

    def _refuse_action(self, adapter: ModelAdapter, trigger: TriggerSpec) -> None:
        if isinstance(adapter, ActionRecognizer):
            raise kinds.InvalidTrigger(
                f"trigger {trigger.name!r}: action models run on a clip (scope: clip)",
                {"trigger": trigger.name},
            )

    async def _image_values(
        self, adapter: ModelAdapter, trigger: TriggerSpec, images: list[Image]
    ) -> list[Any]:
        return await kinds.image_values(
            self.manager,
            adapter,
            trigger,
            images,
            prompts=self.prompts,
            include_embeddings=self.include_embeddings,
        )

    def _children(
        self,
        trigger: TriggerSpec,
        frame: int,
        found: sv.Detections,
        offset: tuple[int, int],
        parent: Subject | None,
    ) -> list[Subject]:
        """Detections found in a crop, as subjects with boxes in frame pixels."""
        self.detecting.add(trigger.name)
        names = found.data.get("class_name", [trigger.name] * len(found))
        scores = found.confidence if found.confidence is not None else np.ones(len(found))
        children = []
        for box, score, label in zip(found.xyxy, scores, names, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            shifted = fit(
                (x1 + offset[0], y1 + offset[1], x2 + offset[0], y2 + offset[1]),
                self.frames[frame].width,
                self.frames[frame].height,
            )
            children.append(Subject(frame, str(label), float(score), shifted, trigger.name, parent))
        self.produced.setdefault(trigger.name, []).extend(children)
        return children
