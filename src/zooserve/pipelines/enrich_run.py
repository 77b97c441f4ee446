"""One enrichment run: the zoo's steps over a batch of frames and their detections.

State lives here, per request: the detections as `sv.Detections` layers (enrich_detections.py:
the primary ones and what each detector trigger found, so chains can follow them), which
triggers failed (so their dependants are skipped with a reason), the leases taken and the
errors met. `execute(step, unit)` leases the step's model once for every input of its triggers
inside `unit`: the whole batch (model-major), or one detection / frame (naive order, kept to
measure what model-major saves); enrich_stages.py runs each stage on those inputs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import supervision as sv

from zooserve.catalog.zoo import PRIMARY, Step, TriggerSpec
from zooserve.core import request_context
from zooserve.core.errors import MediaClosed, ZooError
from zooserve.families.base import ModelAdapter
from zooserve.manager import ModelManager
from zooserve.media import Frame
from zooserve.pipelines.enrich_detections import DetectionLayers, RowRef
from zooserve.pipelines.enrich_results import (
    FrameEnrichment,
    LoadRecord,
    StageError,
    StageReport,
    events_since,
    last_event,
    load_record,
)
from zooserve.pipelines.enrich_stages import EnrichStages

log = logging.getLogger("zooserve.pipelines.enrich")


#: Where a step runs: ("all", None) | ("detection", RowRef of a primary detection) |
#: ("frame", index) | ("batch", None)
Unit = tuple[str, Any]
ALL: Unit = ("all", None)


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
        self.frames = [
            FrameEnrichment(f.number, f.timestamp, f.image.shape[1], f.image.shape[0], empty)
            for f, empty in zip(frames, _no_detections(len(frames)), strict=True)
        ]
        self.layers = DetectionLayers(self.frames, {t.name: t.source for t in self.triggers})
        self.stages = EnrichStages(
            manager,
            [f.image for f in frames],
            self.frames,
            self.layers,
            prompts=prompts or manager.config.default_prompts,
            include_embeddings=include_embeddings,
        )
        self.batch, self.clip = self.stages.batch, self.stages.clip
        self.failed: dict[str, str] = {}  # trigger (or PRIMARY) -> why
        self.reports = {t.name: StageReport(t.name, t.model, t.scope) for t in self.triggers}
        self.errors: list[StageError] = []
        self.loads: list[LoadRecord] = []
        if detections is None:
            self.failed[PRIMARY] = "the primary detector failed"
            detections = _no_detections(len(frames))
        for index, found in enumerate(detections):
            self.frames[index].detections = self.layers.add_primary(index, found, check_boxes)

    # --- which inputs a trigger has -------------------------------------------------------

    def _matching(self, trigger: TriggerSpec) -> list[RowRef]:
        layers = self.layers
        return [
            ref
            for ref in layers.refs(trigger.source)
            if trigger.when.matches(layers.label(ref), layers.confidence(ref))
        ]

    def _frames_meeting(self, trigger: TriggerSpec) -> list[int]:
        counts = Counter(ref.frame for ref in self._matching(trigger))
        return [i for i in range(len(self.frames)) if counts[i] >= trigger.min_count]

    def inputs(self, trigger: TriggerSpec, unit: Unit) -> list[Any]:
        """Detections (RowRefs, scope detection) or frame indices (other scopes) the trigger
        runs on."""
        where, value = unit
        if trigger.scope == "detection":
            if where == "batch":
                return []
            meeting = set(self._frames_meeting(trigger))
            rows = [ref for ref in self._matching(trigger) if ref.frame in meeting]
            root = self.layers.root
            if where == "detection":
                return [ref for ref in rows if root(ref) == value]
            if where == "frame":
                return [r for r in rows if r.frame == value and root(r).layer != PRIMARY]
            return rows
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
            and source not in self.stages.detecting
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
            await self.stages.run(adapter, trigger, found)
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


def _no_detections(count: int) -> list[sv.Detections]:
    return [sv.Detections.empty() for _ in range(count)]
