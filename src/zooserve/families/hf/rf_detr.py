"""RF-DETR (Roboflow, `RfDetrForObjectDetection`): a real-time closed-vocabulary detector.

The processor resizes every image to the checkpoint's square input; boxes come back through
the processor's own `post_process_object_detection` scaled to each original image, so results
match the reference. Labels are the checkpoint's `id2label` (COCO for released weights).
Licences: sizes N to L are Apache-2.0; the XL sizes carry another licence (see the catalog).

Prompts, when given, keep only the labels they name (case, "_" and a leading article aside).
The pipelines hand closed-vocabulary detectors no prompts and filter labels themselves (with
synonyms); this is for direct callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import supervision as sv
import torch

from zooserve.families.base import Detector, Image, make_detections
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.images import image_sizes, rgb_images
from zooserve.runtimes.transformers_runtime import to_device


@dataclass
class RfDetrBatch:
    """What `preprocess` hands to `forward` and `postprocess`."""

    inputs: dict[str, torch.Tensor]
    #: Original (height, width) of each image: the documented `target_sizes`.
    sizes: list[tuple[int, int]]
    #: Plain label names to keep, or None for all.
    wanted: set[str] | None


def plain_label(text: str) -> str:
    """Lower case, '_' as a space, no leading article: "A Traffic_Light" -> "traffic light"."""
    words = text.replace("_", " ").lower().split()
    if len(words) > 1 and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


class RfDetrDetector(TransformersAdapter, Detector):
    """Transformers `RfDetrForObjectDetection` and its image processor."""

    family = "rf_detr"
    open_vocabulary = False
    processor_class = "AutoImageProcessor"
    model_class = "RfDetrForObjectDetection"

    def configure(self, model: Any, processor: Any) -> None:
        """Keep the checkpoint's class names, in class-index order."""
        id2label = model.config.id2label
        self.labels = [str(id2label.get(i, i)) for i in range(model.config.num_labels)]

    def warmup(self) -> None:
        """One tiny forward so the manager can measure a forward pass's peak memory."""
        self.detect([blank_image()], None, threshold=1.0)

    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> RfDetrBatch:
        frames = rgb_images(images)
        wanted = {plain_label(p) for p in prompts if p.strip()} if prompts else None
        if not frames:
            return RfDetrBatch(inputs={}, sizes=[], wanted=wanted)
        inputs = self.processor(images=frames, return_tensors="pt")
        return RfDetrBatch(inputs=dict(inputs), sizes=image_sizes(frames), wanted=wanted or None)

    def forward(self, batch: RfDetrBatch) -> dict[str, torch.Tensor] | None:
        """Run the model; keep only logits and boxes (fp32 on the CPU for post-processing)."""
        if not batch.inputs:
            return None
        outputs = self.model(**to_device(batch.inputs, self.device, self.dtype))
        return {
            "logits": outputs.logits.float().cpu(),
            "pred_boxes": outputs.pred_boxes.float().cpu(),
        }

    def postprocess(
        self, raw: dict[str, torch.Tensor] | None, batch: RfDetrBatch, threshold: float
    ) -> list[sv.Detections]:
        """The processor's post-processing, class ids named by `id2label`, prompts applied."""
        if raw is None:
            return []
        from transformers.models.rf_detr.modeling_rf_detr import RfDetrObjectDetectionOutput

        outputs = RfDetrObjectDetectionOutput(logits=raw["logits"], pred_boxes=raw["pred_boxes"])
        results = self.processor.post_process_object_detection(
            outputs, threshold=threshold, target_sizes=batch.sizes
        )
        found = []
        for result in results:
            names = [self.labels[int(i)] for i in result["labels"]]
            keep = [batch.wanted is None or plain_label(name) in batch.wanted for name in names]
            found.append(
                make_detections(
                    result["boxes"][keep],
                    result["scores"][keep],
                    [name for name, kept in zip(names, keep, strict=True) if kept],
                    self.labels,
                )
            )
        return found
