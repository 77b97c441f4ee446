"""Depth Anything (v1/v2, e.g. depth-anything/Depth-Anything-V2-Small-hf): monocular depth.

What the model predicts and what this adapter returns:
- Relative checkpoints (`depth_estimation_type: relative`, the usual ones) predict affine-
  invariant *inverse* depth: larger = closer, with unknown scale and shift. The kind's contract
  is "lower = closer", so each map is normalised over its own image and flipped:
  `distance = 1 - (x - min) / (max - min)`, float32 in [0, 1], 0 at the nearest pixel and 1 at
  the farthest. Only the ordering is meaningful (shift is unknown, so no reciprocal would give
  true distances), and values are not comparable across images. A flat map gives all zeros.
- Metric checkpoints (`depth_estimation_type: metric`) predict metres, already lower = closer:
  they are returned unchanged.

The DPT processor keeps the aspect ratio (sides a multiple of the patch size), so images of
different sizes cannot share a tensor: the batch is grouped by input size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from zooserve.core.errors import InvalidInput
from zooserve.families.base import Image, run_stages
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.images import group_by_size, image_sizes, rgb_images
from zooserve.families.kinds import DepthEstimator
from zooserve.runtimes.transformers_runtime import process_images


@dataclass
class DepthBatch:
    """Images grouped by size: each group is one tensor the model can take at once."""

    #: indices into the request's images, one list per group
    groups: list[list[int]] = field(default_factory=list)
    #: (n, 3, h, w) float32 per group, h and w multiples of the patch size
    pixel_values: list[torch.Tensor] = field(default_factory=list)
    #: original (height, width) of each image of the request
    sizes: list[tuple[int, int]] = field(default_factory=list)


class DepthAnythingEstimator(TransformersAdapter, DepthEstimator):
    """Transformers `DepthAnythingForDepthEstimation` + its DPT image processor."""

    family = "depth_anything"
    processor_class = "AutoImageProcessor"
    model_class = "DepthAnythingForDepthEstimation"
    #: True for checkpoints that predict metres (returned as they are).
    metric = False

    def configure(self, model: Any, processor: Any) -> None:
        self.metric = model.config.depth_estimation_type == "metric"

    def warmup(self) -> None:
        """One tiny forward so the manager can measure a forward pass's peak memory."""
        self.estimate_depth([blank_image()])

    def estimate_depth(self, images: Sequence[Image]) -> list[np.ndarray]:
        """Depth maps, one per RGB image: float32 (H, W) at the image's size, lower = closer."""
        maps: list[np.ndarray] = run_stages(self, (images,))
        return maps

    def preprocess(self, images: Sequence[Image]) -> DepthBatch:
        """Validate, group equal-sized images, resize/normalise on the CPU."""
        frames = rgb_images(images)
        sizes = image_sizes(frames)
        batch = DepthBatch(sizes=sizes)
        for (height, width), indices in group_by_size(sizes).items():
            try:
                inputs = process_images(self.processor, [frames[i] for i in indices])
            except ValueError as error:
                # Keeping the aspect ratio, a very thin image rounds its short side to 0.
                raise InvalidInput(
                    f"image {indices[0]} ({width}x{height}) cannot be resized for depth "
                    f"estimation: {error}",
                    {"index": indices[0]},
                ) from error
            batch.groups.append(indices)
            batch.pixel_values.append(inputs["pixel_values"])
        return batch

    def forward(self, batch: DepthBatch) -> list[torch.Tensor]:
        """Raw predictions (n, h, w) per group; the only step that touches the device."""
        if not batch.pixel_values:
            return []
        assert self.model is not None, "load() first"
        predictions = []
        for pixel_values in batch.pixel_values:
            inputs = pixel_values.to(self.device, dtype=self.dtype)
            predictions.append(self.model(pixel_values=inputs).predicted_depth)
        return predictions

    def postprocess(self, raw: list[torch.Tensor], batch: DepthBatch) -> list[np.ndarray]:
        """transformers' resize to each input size (bicubic, fp32), then lower = closer."""
        from transformers.modeling_outputs import DepthEstimatorOutput

        maps: list[np.ndarray | None] = [None] * len(batch.sizes)
        for indices, predicted in zip(batch.groups, raw, strict=True):
            outputs = DepthEstimatorOutput(predicted_depth=predicted.float())
            results = self.processor.post_process_depth_estimation(
                outputs, target_sizes=[batch.sizes[i] for i in indices]
            )
            for i, result in zip(indices, results, strict=True):
                # squeeze() in transformers drops a size-1 side; restore (H, W).
                depth = result["predicted_depth"].cpu().numpy().reshape(batch.sizes[i])
                maps[i] = depth.astype(np.float32) if self.metric else inverse_to_distance(depth)
        return [m for m in maps if m is not None]


def inverse_to_distance(inverse_depth: np.ndarray) -> np.ndarray:
    """Relative inverse depth (larger = closer) -> float32 in [0, 1], 0 = nearest pixel."""
    values = np.asarray(inverse_depth, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros_like(values)
    return (1.0 - (values - low) / (high - low)).astype(np.float32)


def relative_distance(depth_map: np.ndarray, box: Sequence[float]) -> float:
    """Median of a depth map (H, W) over a box xyxy in pixels: one distance per detection.

    The box is clipped to the map and widened to whole pixels; a box wholly outside the map
    is the caller's mistake.
    """
    height, width = depth_map.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InvalidInput(f"box {list(box)} is not finite", {"box": [str(v) for v in box]})
    left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
    right, bottom = min(width, math.ceil(x2)), min(height, math.ceil(y2))
    if right <= left or bottom <= top:
        raise InvalidInput(
            f"box {list(box)} lies outside the {width}x{height} depth map", {"box": list(box)}
        )
    return float(np.median(depth_map[top:bottom, left:right]))
