"""Closed-vocabulary ultralytics YOLO checkpoints (`.pt`): detect, segment and pose tasks.

One adapter serves every zoo model trained with ultralytics (licence plates, faces, threats,
vehicle damage masks, yolov8n-pose as the ViTPose fallback). The classes are the checkpoint's
own `names`; prompts are ignored. ultralytics is AGPL-3.0, so it is an optional extra imported
only inside `load()`.

Options (`models.<name>.options`): `classes` (names or ids to keep), `imgsz`, `iou`, `max_det`
(passed to ultralytics' predict), `pose_threshold` and `pose_min_iou` (for `estimate_pose`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
import torch
from scipy.optimize import linear_sum_assignment

from zooserve.catalog import ModelSpec
from zooserve.core.errors import ConfigError, InvalidInput, ModelLoadFailed
from zooserve.families.base import Detector, Image, make_detections
from zooserve.families.images import rgb_images
from zooserve.families.kinds import PoseEstimator
from zooserve.runtimes.ultralytics_runtime import bgr_frames, load_checkpoint, predict

INSTALL_HINT = "yolo needs the optional extra: pip install 'zooserve[ultralytics]' (AGPL-3.0)"
TASKS = ("detect", "segment", "pose")
PREDICT_OPTIONS = ("imgsz", "iou", "max_det")
KEYPOINTS = 17  # COCO


@dataclass
class YoloBatch:
    """What `preprocess` hands to `forward` and `postprocess`."""

    #: BGR uint8 frames, the layout ultralytics expects from numpy input.
    frames: list[np.ndarray]
    #: ultralytics' own confidence cut (strict >), so masks are only built for kept boxes.
    threshold: float = 0.0


class YoloDetector(Detector, PoseEstimator):
    """ultralytics `YOLO`: boxes for every task, plus masks (segment) or keypoints (pose).

    Results carry `mask` (N, H, W) bool at input size for segment checkpoints and
    `data["keypoints"]` (N, 17, 3) float32 (x px, y px, score) for pose checkpoints.
    """

    family = "yolo"
    kind = "detector"
    open_vocabulary = False

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        self.model: Any = None
        self.task = ""
        self.vocabulary: list[str] = []
        self.class_filter: list[int] | None = None
        # ultralytics keeps one predictor per model: concurrent predicts must not interleave.
        self.lock = threading.Lock()

    def load(self) -> None:
        """Load the checkpoint; any failure propagates."""
        model = load_checkpoint("YOLO", self.source, INSTALL_HINT, what="YOLO")
        self.lock = threading.Lock()  # `unload()` clears every attribute, this one too
        if model.task not in TASKS:
            raise ModelLoadFailed(
                f"{self.spec.name}: ultralytics task {model.task!r} is not served here",
                {"task": model.task, "supported": list(TASKS)},
            )
        model.model.to(self.device).eval()
        names: dict[int, str] = dict(model.names)
        self.vocabulary = [str(names[i]) for i in sorted(names)]
        self.class_filter = self._class_filter(self.spec.options.get("classes"))
        self.task = str(model.task)
        self.model = model

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.model.model] if self.model is not None else []

    @classmethod
    def estimate_bytes(cls, source: str, device: str) -> int | None:
        """ultralytics stores fp16 weights: fp32 on the CPU doubles them, CUDA keeps half."""
        path = Path(source)
        if not path.is_file():
            return None
        size = path.stat().st_size
        return size if device.startswith("cuda") else 2 * size

    def warmup(self) -> None:
        """One tiny forward so the manager can measure a forward pass's peak memory."""
        self.detect([np.zeros((32, 32, 3), dtype=np.uint8)], None, threshold=1.0)

    def detect_padded(
        self, images: Sequence[Image], prompts: Sequence[str] | None, threshold: float
    ) -> list[sv.Detections]:
        """Detect in RGB images; prompts are ignored (the checkpoint's classes are fixed)."""
        if not 0.0 <= threshold <= 1.0:
            raise InvalidInput(f"threshold must be in [0, 1], got {threshold}")
        batch = self.preprocess(images, prompts)
        batch.threshold = threshold
        with torch.inference_mode():
            raw = self.forward(batch)
        return self.postprocess(raw, batch, threshold)

    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> YoloBatch:
        """Validate, then flip RGB to BGR: ultralytics treats numpy input as OpenCV frames."""
        return YoloBatch(frames=bgr_frames(rgb_images(images)))

    def forward(self, batch: YoloBatch) -> list[Any]:
        """ultralytics' predict: letterbox, network, NMS, masks at input size (retina masks)."""
        if not batch.frames:
            return []
        assert self.model is not None, "load() first"
        options = {k: self.spec.options[k] for k in PREDICT_OPTIONS if k in self.spec.options}
        with self.lock:
            return predict(
                self.model,
                batch.frames,
                self.device,
                conf=batch.threshold,
                classes=self.class_filter,
                retina_masks=True,
                **options,
            )

    def postprocess(
        self, raw: list[Any], batch: YoloBatch, threshold: float
    ) -> list[sv.Detections]:
        """Boxes are already in input pixels (ultralytics rescales and clips); keep > threshold."""
        detections = []
        for result, frame in zip(raw, batch.frames, strict=True):
            scores = result.boxes.conf.float().cpu().numpy()
            keep = scores > threshold
            xyxy = result.boxes.xyxy.float().cpu().numpy()[keep]
            labels = [self.vocabulary[int(i)] for i in result.boxes.cls.cpu().numpy()[keep]]
            found = make_detections(xyxy, scores[keep], labels, self.vocabulary)
            if self.task == "segment":
                found.mask = self._masks(result, frame.shape[:2])[keep]
            if self.task == "pose":
                found.data["keypoints"] = self._keypoints(result)[keep]
            detections.append(found)
        return detections

    def estimate_pose(self, image: Image, boxes: np.ndarray) -> np.ndarray:
        """(N, 17, 3) keypoints for the given person boxes (N, 4) xyxy px.

        The pose model finds its own people; each given box gets the pose whose box overlaps it
        best (one pose per box, by optimal assignment), or zeros when none reaches
        `pose_min_iou` (default 0.3).
        """
        if self.task != "pose":
            raise InvalidInput(
                f"{self.spec.name} is a {self.task} model; estimate_pose needs a pose checkpoint"
            )
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InvalidInput(f"boxes must be (N, 4) xyxy, got shape {boxes.shape}")
        poses = np.zeros((len(boxes), KEYPOINTS, 3), dtype=np.float32)
        if len(boxes) == 0:
            return poses
        threshold = float(self.spec.options.get("pose_threshold", 0.25))
        (found,) = self.detect([image], None, threshold)
        if len(found) == 0:
            return poses
        overlap = sv.box_iou_batch(boxes, found.xyxy)  # (given, found)
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        min_iou = float(self.spec.options.get("pose_min_iou", 0.3))
        for row, col in zip(rows, cols, strict=True):
            if overlap[row, col] >= min_iou:
                poses[row] = found.data["keypoints"][col]
        return poses

    def _class_filter(self, classes: Any) -> list[int] | None:
        """`options.classes` (names or ids) as class ids for ultralytics' NMS."""
        if classes is None:
            return None
        wanted = [classes] if isinstance(classes, str | int) else list(classes)
        ids = []
        for item in wanted:
            index = self.vocabulary.index(item) if item in self.vocabulary else item
            if not isinstance(index, int) or not 0 <= index < len(self.vocabulary):
                raise ConfigError(
                    f"models.{self.spec.name}.options.classes: unknown class {item!r}",
                    {"known_classes": self.vocabulary},
                )
            ids.append(index)
        return ids

    @staticmethod
    def _masks(result: Any, shape: tuple[int, ...]) -> np.ndarray:
        """(N, H, W) bool at input size; retina masks are already there."""
        if result.masks is None:  # no boxes
            return np.zeros((0, *shape[:2]), dtype=bool)
        return np.asarray(result.masks.data.cpu().numpy() > 0, dtype=bool)

    @staticmethod
    def _keypoints(result: Any) -> np.ndarray:
        """(N, 17, 3) float32; checkpoints without keypoint scores get score 1."""
        if result.keypoints is None:  # no boxes
            return np.zeros((0, KEYPOINTS, 3), dtype=np.float32)
        points = result.keypoints.data.float().cpu().numpy()
        if points.shape[-1] == 2:
            points = np.concatenate([points, np.ones_like(points[..., :1])], axis=-1)
        return np.asarray(points, dtype=np.float32)
