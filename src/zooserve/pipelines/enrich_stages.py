"""What one enrichment stage does with its model over its inputs, and where the values land.

By scope: detections get values in their rows' enrichments (pose on each frame's boxes, depth
over each box, any other kind on the crops), frames in their own enrichments, a batch one
aggregate of its frames' values, a clip one action value. What a detector trigger finds becomes
rows of its layer (enrich_detections.py) that later triggers can chain from. Which inputs, when
and under which lease is enrich_run.py's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zooserve.catalog.zoo import PRIMARY, TriggerSpec
from zooserve.families.base import Detector, Image, ModelAdapter
from zooserve.families.kinds import ActionRecognizer, DepthEstimator, PoseEstimator
from zooserve.manager import ModelManager
from zooserve.pipelines import enrich_kinds as kinds
from zooserve.pipelines import enrich_values as values
from zooserve.pipelines.enrich_detections import DetectionLayers, RowRef, crop
from zooserve.pipelines.enrich_results import FrameEnrichment


class EnrichStages:
    """The values of one request's stages: per detection and frame, for the batch and clip."""

    def __init__(
        self,
        manager: ModelManager,
        images: Sequence[Image],
        frames: list[FrameEnrichment],
        layers: DetectionLayers,
        *,
        prompts: Sequence[str],
        include_embeddings: bool,
    ) -> None:
        self.manager = manager
        self.images = list(images)
        self.frames = frames
        self.layers = layers
        self.prompts = list(prompts)
        self.include_embeddings = include_embeddings
        self.detecting: set[str] = {PRIMARY}  # triggers whose model produced detections
        self.batch: dict[str, Any] = {}  # output -> aggregate over the batch's frames
        self.clip: dict[str, Any] = {}  # output -> value for the frames as one clip

    async def run(self, adapter: ModelAdapter, trigger: TriggerSpec, inputs: list[Any]) -> None:
        """Run the trigger's stage on its inputs: RowRefs (scope detection) or frame indices."""
        if trigger.scope == "detection":
            await self.on_detections(adapter, trigger, inputs)
        elif trigger.scope == "frame":
            await self.on_frames(adapter, trigger, inputs)
        elif trigger.scope == "batch":
            found = await self.on_frames(adapter, trigger, inputs)
            self.batch[trigger.output_name] = values.aggregate(found)
        else:
            ordered = sorted(inputs, key=lambda index: self.frames[index].frame_number)
            clip = [self.images[i] for i in ordered]
            value = await kinds.action_value(self.manager, adapter, trigger, clip)
            self.clip[trigger.output_name] = value

    async def on_detections(
        self, adapter: ModelAdapter, trigger: TriggerSpec, rows: list[RowRef]
    ) -> None:
        """Pose on each frame's boxes, depth over each box; any other kind on the crops."""
        out, layers = trigger.output_name, self.layers
        if isinstance(adapter, PoseEstimator):
            for index in sorted({ref.frame for ref in rows}):
                group = [ref for ref in rows if ref.frame == index]
                boxes = [layers.box(ref) for ref in group]
                poses = await kinds.pose_values(
                    self.manager, adapter, trigger, self.images[index], boxes
                )
                for ref, value in zip(group, poses, strict=True):
                    layers.enrichments(ref)[out] = value
            return
        if isinstance(adapter, DepthEstimator):
            indices = sorted({ref.frame for ref in rows})
            maps = await self._image_values(adapter, trigger, [self.images[i] for i in indices])
            depth = dict(zip(indices, maps, strict=True))
            for ref in rows:
                layers.enrichments(ref)[out] = values.depth_at_box(
                    depth[ref.frame], layers.box(ref)
                )
            return
        _refuse_action(adapter, trigger)
        crops = [crop(self.images[r.frame], layers.box(r), trigger.crop_padding) for r in rows]
        found = await self._image_values(adapter, trigger, [image for image, _ in crops])
        detector = self._detects(adapter, trigger)
        for ref, (_, offset), value in zip(rows, crops, found, strict=True):
            layers.enrichments(ref)[out] = (
                # its finds: rows of its layer in frame pixels, pointing back to this row
                layers.add_found(trigger.name, ref.frame, value, offset, ref.row)
                if detector
                else values.in_frame(value, offset)  # OCR boxes: crop -> frame pixels
            )

    async def on_frames(
        self, adapter: ModelAdapter, trigger: TriggerSpec, indices: list[int]
    ) -> list[Any]:
        """Each frame's value (a detector's finds become a layer found on the frame)."""
        if isinstance(adapter, PoseEstimator):
            raise kinds.InvalidTrigger(
                f"trigger {trigger.name!r}: pose models run on person detections "
                "(scope: detection)",
                {"trigger": trigger.name},
            )
        _refuse_action(adapter, trigger)
        found = await self._image_values(adapter, trigger, [self.images[i] for i in indices])
        detector = self._detects(adapter, trigger)
        for index, raw in zip(indices, found, strict=True):
            value: Any = raw
            if detector:
                value = self.layers.add_found(trigger.name, index, raw, (0, 0))
            elif isinstance(adapter, DepthEstimator):
                value = values.depth_summary(raw)
            else:
                value = values.in_frame(raw, (0, 0))  # labels OCR boxes as frame pixels
            self.frames[index].enrichments[trigger.output_name] = value
        return [self.frames[i].enrichments[trigger.output_name] for i in indices]

    def _detects(self, adapter: ModelAdapter, trigger: TriggerSpec) -> bool:
        """True for a detector, whose trigger can then feed others (noted in `detecting`)."""
        if not isinstance(adapter, Detector):
            return False
        self.detecting.add(trigger.name)
        return True

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


def _refuse_action(adapter: ModelAdapter, trigger: TriggerSpec) -> None:
    if isinstance(adapter, ActionRecognizer):
        raise kinds.InvalidTrigger(
            f"trigger {trigger.name!r}: action models run on a clip (scope: clip)",
            {"trigger": trigger.name},
        )
