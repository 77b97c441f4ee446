"""MTCNN face detector (facenet-pytorch): closed vocabulary, one label ("face").

facenet-pytorch ships the P-, R- and O-net weights in its wheel (`facenet_pytorch/data/*.pt`),
so model_id `facenet-pytorch:mtcnn` works offline; a local directory holding `pnet.pt`,
`rnet.pt` and `onet.pt` works too. Besides boxes and probabilities it returns the five facial
landmarks (eyes, nose, mouth corners) as `detections.data["landmarks"]`, (N, 5, 2) float32 px.

MTCNN stacks a batch into one tensor, so images of different sizes are grouped by size and each
group runs as one batch. The networks stay float32 on every device: they are ~2 MB (half
precision would save nothing) and torchvision's NMS, which MTCNN calls, has no bfloat16 kernel.
Options: `min_face_size` (px, default 20), `thresholds` (per stage, default [0.6, 0.7, 0.7]),
`factor` (image pyramid scale step, default 0.709), `label` (default "face").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
import torch

from zooserve.catalog import ModelSpec
from zooserve.core.errors import ModelUnavailable
from zooserve.families.base import Detector, Image, make_detections
from zooserve.families.images import group_by_size, image_sizes, rgb_images
from zooserve.families.shipped import ShippedWeights

WEIGHT_FILES = {"pnet": "pnet.pt", "rnet": "rnet.pt", "onet": "onet.pt"}
#: `facenet_pytorch/data/` of the installed wheel (found without importing it). The nets stay
#: float32 on CUDA too, so their file bytes are the estimate (no halving).
SHIPPED = ShippedWeights(
    "facenet-pytorch:mtcnn", "facenet_pytorch", "data", (*WEIGHT_FILES.values(),)
)


@dataclass
class MtcnnBatch:
    """Images grouped by size: each group is one (n, H, W, 3) uint8 stack MTCNN takes at once."""

    groups: list[list[int]] = field(default_factory=list)
    stacks: list[np.ndarray] = field(default_factory=list)
    #: original (height, width) of each image of the request
    sizes: list[tuple[int, int]] = field(default_factory=list)


#: Per image: boxes (N, 4) xyxy px, probabilities (N,), landmarks (N, 5, 2) px; float32.
RawFaces = tuple[np.ndarray, np.ndarray, np.ndarray]


class MtcnnFaceDetector(Detector):
    """facenet_pytorch.MTCNN with keep_all=True: every face, not just the largest."""

    family = "mtcnn"
    open_vocabulary = False
    shipped = SHIPPED

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        self.dtype = torch.float32  # see the module docstring
        self.model: torch.nn.Module | None = None
        self.label = str(spec.options.get("label", "face"))
        self.min_face_size = int(spec.options.get("min_face_size", 20))

    def load(self) -> None:
        """Build MTCNN on the device and load the three nets' weights from `self.source`."""
        from facenet_pytorch import MTCNN

        paths = {net: Path(self.source) / name for net, name in WEIGHT_FILES.items()}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise ModelUnavailable(f"MTCNN weights not found: {missing}", {"missing": missing})
        options = self.spec.options
        model = MTCNN(
            keep_all=True,
            select_largest=False,
            min_face_size=self.min_face_size,
            thresholds=[float(t) for t in options.get("thresholds", [0.6, 0.7, 0.7])],
            factor=float(options.get("factor", 0.709)),
            device=torch.device(self.device),
        )
        # MTCNN() reads the wheel's weights itself; reading `source` too makes the configured
        # files the ones in use (and a corrupt file fail here, not silently fall back).
        for net, path in paths.items():
            state = torch.load(path, map_location="cpu", weights_only=True)
            getattr(model, net).load_state_dict(state)
        self.model = model.to(self.device, dtype=self.dtype).eval()

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.model] if self.model is not None else []

    def warmup(self) -> None:
        self.detect([np.zeros((64, 64, 3), dtype=np.uint8)], None, threshold=1.0)

    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> MtcnnBatch:
        """Validate and group same-sized images (prompts are ignored: closed vocabulary)."""
        frames = rgb_images(images)
        batch = MtcnnBatch(sizes=image_sizes(frames))
        for (height, width), indices in group_by_size(batch.sizes).items():
            # MTCNN's image pyramid is empty for images smaller than the smallest face it looks
            # for, and facenet-pytorch then fails on an empty concatenation: skip those.
            if min(height, width) < self.min_face_size:
                continue
            batch.groups.append(indices)
            batch.stacks.append(np.stack([np.asarray(frames[i], dtype=np.uint8) for i in indices]))
        return batch

    def forward(self, batch: MtcnnBatch) -> dict[int, RawFaces]:
        """Run the three cascaded nets per size group; returns faces by image index."""
        assert self.model is not None, "load() first"
        mtcnn: Any = self.model  # facenet_pytorch.MTCNN (untyped)
        found: dict[int, RawFaces] = {}
        for indices, stack in zip(batch.groups, batch.stacks, strict=True):
            boxes, probs, points = mtcnn.detect(stack, landmarks=True)
            for j, index in enumerate(indices):
                found[index] = _as_arrays(boxes[j], probs[j], points[j])
        return found

    def postprocess(
        self, raw: dict[int, RawFaces], batch: MtcnnBatch, threshold: float
    ) -> list[sv.Detections]:
        """Keep faces with probability > threshold, highest first, boxes clipped to the image."""
        results = []
        for index, (height, width) in enumerate(batch.sizes):
            boxes, probs, points = raw.get(index, _as_arrays(None, None, None))
            keep = np.flatnonzero(probs > threshold)
            keep = keep[np.argsort(-probs[keep], kind="stable")]
            boxes = boxes[keep]
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
            detections = make_detections(
                boxes, probs[keep], [self.label] * len(keep), vocabulary=[self.label]
            )
            detections.data["landmarks"] = points[keep]
            results.append(detections)
        return results


def _as_arrays(boxes: Any, probs: Any, points: Any) -> RawFaces:
    """facenet-pytorch gives None (no face) or object arrays; make float32 arrays of N faces."""
    if boxes is None:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, 5, 2), np.float32),
        )
    return (
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(probs, dtype=np.float32).reshape(-1),
        np.asarray(points, dtype=np.float32).reshape(-1, 5, 2),
    )
