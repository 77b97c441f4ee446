"""ViTPose (e.g. usyd-community/vitpose-base-simple): top-down 2D human pose via transformers.

Person boxes come in as xyxy pixels; `VitPoseImageProcessor` and its
`post_process_pose_estimation` take COCO boxes (top-left x, top-left y, width, height) in
pixels (transformers 5.23, `box_to_center_and_scale`), so they are converted here. The processor
crops each box (padded by 1.25 to the model's aspect ratio) with an affine warp on the CPU;
post-processing maps heatmap peaks (DARK refinement) back to image pixels. Keypoints may
therefore land outside the box: within its padded crop, give or take the refinement.

Options (`models.<name>.options`): `batch_size` (boxes per forward, default 16);
`dataset_index` (which expert head of a ViTPose++ mixture-of-experts backbone, default 0 =
COCO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from zooserve.catalog import ModelSpec
from zooserve.core.errors import InvalidInput, ModelLoadFailed
from zooserve.families.base import Image
from zooserve.families.hf.adapter import TransformersAdapter, blank_image
from zooserve.families.kinds import PoseEstimator
from zooserve.runtimes.transformers_runtime import process_images

#: COCO body keypoints; whole-body checkpoints list these first.
NUM_KEYPOINTS = 17


@dataclass
class PoseChunk:
    """Up to `batch_size` boxes of one image, cropped and normalised."""

    pixel_values: torch.Tensor  # (n, 3, h, w) float32, the processor's crop size
    boxes_xywh: np.ndarray  # (n, 4) float32, COCO format, pixels


@dataclass
class PoseBatch:
    """All boxes of one request; only the `usable` ones (at least 1 px a side) are cropped."""

    boxes_xyxy: np.ndarray  # (N, 4) float32
    usable: np.ndarray  # (N,) bool
    chunks: list[PoseChunk]


class VitPoseEstimator(TransformersAdapter, PoseEstimator):
    """Transformers `VitPoseForPoseEstimation` + `VitPoseImageProcessor`."""

    family = "vitpose"
    processor_class = "VitPoseImageProcessor"
    model_class = "VitPoseForPoseEstimation"

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        self.batch_size = int(spec.options.get("batch_size", 16))
        self.dataset_index = int(spec.options.get("dataset_index", 0))
        #: True for ViTPose++ (mixture-of-experts MLPs need a dataset index per crop).
        self.mixture_of_experts = False

    def configure(self, model: Any, processor: Any) -> None:
        """Refuse checkpoints without the 17 COCO keypoints; note a mixture of experts."""
        config = model.config
        if config.num_labels < NUM_KEYPOINTS:
            raise ModelLoadFailed(
                f"{self.spec.name}: {config.num_labels} keypoints, the pose kind needs the "
                f"{NUM_KEYPOINTS} COCO keypoints",
                {"num_keypoints": config.num_labels},
            )
        self.mixture_of_experts = config.backbone_config.num_experts > 1

    def warmup(self) -> None:
        """One tiny forward so the manager can measure a forward pass's peak memory."""
        self.estimate_pose(
            blank_image(64, 48), np.array([[0.0, 0.0, 48.0, 64.0]], dtype=np.float32)
        )

    def estimate_pose(self, image: Image, boxes: np.ndarray) -> np.ndarray:
        """Keypoints of each person box.

        Args:
            image: RGB uint8 (H, W, 3).
            boxes: (N, 4) person boxes, xyxy pixels in `image`.

        Returns:
            (N, 17, 3) float32: x px, y px, score (the heatmap peak; about 0..1 when trained),
            in COCO keypoint order. A box under 1 px a side (e.g. clipped at the image edge)
            gets all 17 keypoints at its centre with score 0.
        """
        batch = self.preprocess(image, boxes)
        with torch.inference_mode():
            heatmaps = self.forward(batch.chunks)
        return self.postprocess(heatmaps, batch)

    def preprocess(self, image: Image, boxes: np.ndarray) -> PoseBatch:
        """Validate, convert boxes to COCO xywh, crop each usable box (CPU)."""
        frame = np.asarray(image)
        if frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
            raise InvalidInput(f"image must be RGB (H, W, 3), got shape {frame.shape}")
        xyxy = np.asarray(boxes, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise InvalidInput(f"boxes must have shape (N, 4) xyxy, got {xyxy.shape}")
        widths, heights = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        bad = ~np.isfinite(xyxy).all(axis=1) | (widths < 0) | (heights < 0)
        if bad.any():
            raise InvalidInput(
                "person boxes must be finite xyxy with x2 >= x1 and y2 >= y1",
                {"indices": np.flatnonzero(bad).tolist()},
            )
        usable = (widths >= 1) & (heights >= 1)
        xywh = np.stack([xyxy[:, 0], xyxy[:, 1], widths, heights], axis=1)[usable]
        chunks = []
        for start in range(0, len(xywh), max(1, self.batch_size)):
            part = xywh[start : start + max(1, self.batch_size)]
            inputs = process_images(self.processor, [frame], boxes=[part.tolist()])
            chunks.append(PoseChunk(pixel_values=inputs["pixel_values"], boxes_xywh=part))
        return PoseBatch(boxes_xyxy=xyxy, usable=usable, chunks=chunks)

    def forward(self, chunks: list[PoseChunk]) -> list[torch.Tensor]:
        """Heatmaps (n, K, h/4, w/4) per chunk; the only step that touches the device."""
        if not chunks:
            return []
        assert self.model is not None, "load() first"
        heatmaps = []
        for chunk in chunks:
            pixel_values = chunk.pixel_values.to(self.device, dtype=self.dtype)
            extra = {}
            if self.mixture_of_experts:
                extra["dataset_index"] = torch.full(
                    (len(pixel_values),), self.dataset_index, dtype=torch.long, device=self.device
                )
            heatmaps.append(self.model(pixel_values=pixel_values, **extra).heatmaps)
        return heatmaps

    def postprocess(self, heatmaps: list[torch.Tensor], batch: PoseBatch) -> np.ndarray:
        """transformers' own heatmap decoding (fp32, CPU), stacked to (N, 17, 3)."""
        from transformers.models.vitpose.modeling_vitpose import VitPoseEstimatorOutput

        poses = np.zeros((len(batch.boxes_xyxy), NUM_KEYPOINTS, 3), dtype=np.float32)
        centres = (batch.boxes_xyxy[:, :2] + batch.boxes_xyxy[:, 2:]) / 2
        poses[:, :, :2] = centres[:, None, :]
        people = []
        for chunk, maps in zip(batch.chunks, heatmaps, strict=True):
            outputs = VitPoseEstimatorOutput(heatmaps=maps.float().cpu())
            (image_people,) = self.processor.post_process_pose_estimation(
                outputs, boxes=[chunk.boxes_xywh.tolist()]
            )
            for person in image_people:
                keypoints = person["keypoints"].numpy().reshape(-1, 2)[:NUM_KEYPOINTS]
                scores = person["scores"].numpy().reshape(-1)[:NUM_KEYPOINTS]
                people.append(np.concatenate([keypoints, scores[:, None]], axis=1))
        if people:
            poses[batch.usable] = np.stack(people)
        return poses
