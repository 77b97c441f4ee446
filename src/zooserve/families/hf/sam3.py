"""SAM 3 (Meta, `Sam3Model`): detection and segmentation by concept. A text prompt ("person",
"red car") returns every matching instance with a box, a mask and a score.

SAM 3 reads one concept per forward, so a batch pairs every image with every prompt
(images x prompts pairs). Boxes, scores and masks come from the processor's own
`post_process_instance_segmentation` at each original size, so they match the reference; the
masks travel on the detections (`sv.Detections.mask`, bool (N, H, W)). Licence: "SAM License"
(Meta), not Apache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
import torch

from zooserve.core.errors import InvalidInput
from zooserve.families.base import Detector, Image, make_detections
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.images import image_sizes, rgb_images
from zooserve.runtimes.transformers_runtime import to_device

#: The mask logit threshold of the reference post-processing.
MASK_THRESHOLD = 0.5


@dataclass
class Sam3Batch:
    """Pairs in image-major order: pair i is image i // len(prompts), prompt i % len(prompts)."""

    inputs: dict[str, torch.Tensor]
    sizes: list[tuple[int, int]]  # (height, width) of each image
    prompts: list[str]


class Sam3Detector(TransformersAdapter, Detector):
    """Transformers `Sam3Model` + `Sam3Processor`: open-vocabulary boxes and masks."""

    family = "sam3"
    open_vocabulary = True
    processor_class = "Sam3Processor"
    model_class = "Sam3Model"

    def warmup(self) -> None:
        """One tiny forward so the manager can measure a forward pass's peak memory."""
        self.detect([blank_image()], ["object"], threshold=1.0)

    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> Sam3Batch:
        texts = [p.strip() for p in prompts or [] if isinstance(p, str) and p.strip()]
        if not texts:
            raise InvalidInput("SAM 3 detects by concept: give at least one text prompt")
        frames = rgb_images(images)
        if not frames:
            return Sam3Batch(inputs={}, sizes=[], prompts=texts)
        inputs = self.processor(
            images=[frame for frame in frames for _ in texts],
            text=texts * len(frames),
            return_tensors="pt",
        )
        return Sam3Batch(inputs=dict(inputs), sizes=image_sizes(frames), prompts=texts)

    def forward(self, batch: Sam3Batch) -> dict[str, torch.Tensor] | None:
        """Run the model; keep what post-processing reads, in fp32 on the CPU."""
        if not batch.inputs:
            return None
        inputs = {k: v for k, v in batch.inputs.items() if k != "original_sizes"}
        outputs = self.model(**to_device(inputs, self.device, self.dtype))
        keys = ("pred_logits", "pred_boxes", "pred_masks", "presence_logits")
        return {key: outputs[key].float().cpu() for key in keys if outputs.get(key) is not None}

    def postprocess(
        self, raw: dict[str, torch.Tensor] | None, batch: Sam3Batch, threshold: float
    ) -> list[sv.Detections]:
        """The processor's instance post-processing per pair, merged per image."""
        if raw is None:
            return []
        from transformers.models.sam3.modeling_sam3 import Sam3ImageSegmentationOutput

        count = len(batch.prompts)
        outputs = Sam3ImageSegmentationOutput(
            pred_logits=raw["pred_logits"],
            pred_boxes=raw["pred_boxes"],
            pred_masks=raw["pred_masks"],
            presence_logits=raw.get("presence_logits"),
        )
        results = self.processor.post_process_instance_segmentation(
            outputs,
            threshold=threshold,
            mask_threshold=MASK_THRESHOLD,
            target_sizes=[size for size in batch.sizes for _ in batch.prompts],
        )
        return [
            self._merge(results[i * count : (i + 1) * count], batch.prompts, size)
            for i, size in enumerate(batch.sizes)
        ]

    @staticmethod
    def _merge(
        results: Sequence[dict[str, Any]], prompts: list[str], size: tuple[int, int]
    ) -> sv.Detections:
        """One image's detections over all prompts, each labelled with its prompt."""
        boxes = [r["boxes"].reshape(-1, 4) for r in results]
        labels = [p for r, p in zip(results, prompts, strict=True) for _ in range(len(r["scores"]))]
        detections = make_detections(
            torch.cat(boxes), torch.cat([r["scores"] for r in results]), labels, prompts
        )
        masks = [r["masks"].reshape(-1, *size).bool() for r in results]
        detections.mask = np.asarray(torch.cat(masks).numpy(), dtype=bool)
        return detections
