"""SegFormer (e.g. mattmdjaga/segformer_b2_clothes): semantic segmentation via transformers.

The processor resizes every image to one fixed size, so a batch of any sizes stacks into one
tensor. transformers' `post_process_semantic_segmentation` upsamples the logits (bilinear) to
each original `(height, width)` before the argmax, so label maps come back at the input size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from zooserve.catalog import ModelSpec
from zooserve.families.base import Image, run_stages
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.images import image_sizes, rgb_images
from zooserve.families.kinds import Segmenter
from zooserve.runtimes.transformers_runtime import process_images


@dataclass
class SegformerBatch:
    """What `preprocess` hands to `forward` and `postprocess`."""

    pixel_values: torch.Tensor | None  # (B, 3, h, w) float32, the processor's fixed size
    sizes: list[tuple[int, int]]  # original (height, width) of each image


class SegformerSegmenter(TransformersAdapter, Segmenter):
    """Transformers `SegformerForSemanticSegmentation`; `labels[i]` is `config.id2label[i]`."""

    family = "segformer"
    processor_class = "AutoImageProcessor"
    model_class = "SegformerForSemanticSegmentation"

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        self.labels: list[str] = []

    def configure(self, model: Any, processor: Any) -> None:
        config = model.config
        id2label: Mapping[int, str] = config.id2label
        self.labels = [str(id2label.get(i, f"class_{i}")) for i in range(config.num_labels)]

    def warmup(self) -> None:
        """One tiny forward so the manager can measure a forward pass's peak memory."""
        self.segment([blank_image()])

    def segment(self, images: Sequence[Image]) -> list[np.ndarray]:
        """Label maps, one per RGB image: int32 (H, W) class ids at the image's own size."""
        maps: list[np.ndarray] = run_stages(self, (images,))
        return maps

    def preprocess(self, images: Sequence[Image]) -> SegformerBatch:
        """Validate and resize/normalise on the CPU."""
        frames = rgb_images(images)
        sizes = image_sizes(frames)
        if not frames:
            return SegformerBatch(pixel_values=None, sizes=sizes)
        inputs = process_images(self.processor, frames)
        return SegformerBatch(pixel_values=inputs["pixel_values"], sizes=sizes)

    def forward(self, batch: SegformerBatch) -> torch.Tensor | None:
        """Logits (B, num_labels, h/4, w/4); the only step that touches the device."""
        if batch.pixel_values is None:
            return None
        assert self.model is not None, "load() first"
        pixel_values = batch.pixel_values.to(self.device, dtype=self.dtype)
        logits: torch.Tensor = self.model(pixel_values=pixel_values).logits
        return logits

    def postprocess(self, logits: torch.Tensor | None, batch: SegformerBatch) -> list[np.ndarray]:
        """transformers' own post-processing in fp32: upsample to each input size, argmax."""
        if logits is None:
            return []
        from transformers.modeling_outputs import SemanticSegmenterOutput

        outputs = SemanticSegmenterOutput(logits=logits.float())
        maps = self.processor.post_process_semantic_segmentation(outputs, target_sizes=batch.sizes)
        return [label_map.cpu().numpy().astype(np.int32) for label_map in maps]
