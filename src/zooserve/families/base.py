"""The adapter contracts every model family implements.

A family file subclasses one kind's contract (only `Detector` exists so far) and registers
itself in `families/__init__.py`. The manager calls `load()` on its dedicated loader thread and
`unload()` when evicting; pipelines call the kind's method (e.g. `detect`) in the inference pool.
Only `forward` may touch the device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import supervision as sv
import torch

from zooserve.catalog import ModelSpec
from zooserve.runtimes.torch_runtime import inference_dtype, module_bytes

#: RGB uint8 image, shape (H, W, 3).
Image = np.ndarray


class ModelAdapter(ABC):
    """One loaded model: weights, processor and whatever caches it needs.

    Args:
        spec: the model's config entry.
        source: where the weights are: a local directory/file path, or a package resource id.
        device: concrete torch device string ("cpu", "cuda:0").
    """

    family: ClassVar[str]
    kind: ClassVar[str]

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        self.spec = spec
        self.source = source
        self.device = device
        self.dtype = inference_dtype(device)

    @abstractmethod
    def load(self) -> None:
        """Read weights and move them to `self.device`. Must raise on any failure."""

    def torch_modules(self) -> list[torch.nn.Module]:
        """The torch modules this adapter holds (used to count bytes and to verify unload)."""
        return []

    def memory_bytes(self) -> int:
        """Bytes of the loaded model's tensors (parameters + buffers), or of its weights."""
        return module_bytes(self.torch_modules())

    def unload(self) -> None:
        """Drop every reference to weights, processors and caches (the manager then collects
        garbage once and verifies that the memory came back)."""
        for name in list(vars(self)):
            if name not in ("spec", "source", "device", "dtype"):
                setattr(self, name, None)

    def warmup(self) -> None:  # noqa: B027 - optional hook, default is a no-op
        """Run one small inference so the peak memory of a forward pass can be measured."""

    @classmethod
    def builtin_source(cls, model_id: str) -> str | None:
        """Where a `scheme:name` model id (weights shipped inside a package, e.g.
        `opencv:haarcascade_frontalface_default.xml`) lives here, or None if absent."""
        return None

    @classmethod
    def estimate_bytes(cls, source: str, device: str) -> int | None:
        """Estimate the loaded size before loading: weight-file bytes x dtype factor."""
        path = Path(source)
        if not path.exists():
            return None
        files = (
            [path]
            if path.is_file()
            else [
                p
                for p in path.rglob("*")
                if p.suffix in {".safetensors", ".bin", ".pt", ".pth", ".onnx"}
            ]
        )
        size = sum(p.stat().st_size for p in files)
        # Checkpoints here are fp32; half precision on CUDA halves them.
        return size // 2 if device.startswith("cuda") else size


class Detector(ModelAdapter):
    """Kind `detector`: images (+ text prompts) -> boxes, scores, labels per image.

    Result per image is a `supervision.Detections` with `xyxy` (N, 4) float32 pixels in the
    input image, `confidence` (N,), `class_id` (N,) and `data["class_name"]` (N,) strings.
    """

    kind = "detector"
    #: True when the model takes free-text prompts (OWLv2, Grounding DINO, ...).
    open_vocabulary: ClassVar[bool] = True

    #: Smallest (width, height) the model is given: smaller frames are zero-padded at the
    #: right and bottom first (native detectors crash or hang on tiny frames; see FACTS.md).
    min_input_size: ClassVar[tuple[int, int]] = (32, 32)

    def detect(
        self, images: Sequence[Image], prompts: Sequence[str] | None, threshold: float
    ) -> list[sv.Detections]:
        """Detect in a batch of RGB images. Prompts apply to every image of the batch.

        Frames below `min_input_size` are padded (coordinates unchanged), and boxes are
        clipped to each original frame, so no frame size reaches the model unchecked.
        """
        padded = [pad_to_min(image, *self.min_input_size) for image in images]
        found = self.detect_padded(padded, prompts, threshold)
        return [
            within_frame(d, *np.shape(image)[:2], padded=p is not image)
            for d, image, p in zip(found, images, padded, strict=True)
        ]

    def detect_padded(
        self, images: Sequence[Image], prompts: Sequence[str] | None, threshold: float
    ) -> list[sv.Detections]:
        """The family's detection over frames of an accepted size."""
        batch = self.preprocess(images, prompts)
        with torch.inference_mode():
            raw = self.forward(batch)
        return self.postprocess(raw, batch, threshold)

    @abstractmethod
    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> Any:
        """CPU-side preparation; returns whatever `forward` needs."""

    @abstractmethod
    def forward(self, batch: Any) -> Any:
        """The only step that touches the device."""

    @abstractmethod
    def postprocess(self, raw: Any, batch: Any, threshold: float) -> list[sv.Detections]:
        """Convert raw outputs to one `sv.Detections` per image, boxes in input pixels."""


def make_detections(
    boxes: npt.ArrayLike, scores: npt.ArrayLike, labels: Sequence[str], vocabulary: Sequence[str]
) -> sv.Detections:
    """Build the common detection carrier; `class_id` indexes `vocabulary` (-1 if absent)."""
    xyxy = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    index = {name: i for i, name in enumerate(vocabulary)}
    return sv.Detections(
        xyxy=xyxy,
        confidence=np.asarray(scores, dtype=np.float32).reshape(-1),
        class_id=np.array([index.get(label, -1) for label in labels], dtype=int),
        data={"class_name": np.array(list(labels), dtype=str)},
    )


def pad_to_min(image: Image, min_width: int, min_height: int) -> np.ndarray:
    """The image zero-padded at the right and bottom to at least min_width x min_height.

    Padding there keeps every pixel's coordinates, so boxes found in the padded image are
    boxes in the original. Images already large enough are returned as they are.
    """
    frame = np.asarray(image)
    if frame.ndim < 2:
        return frame
    height, width = frame.shape[:2]
    if height >= min_height and width >= min_width:
        return frame
    pad = [(0, max(0, min_height - height)), (0, max(0, min_width - width))]
    pad += [(0, 0)] * (frame.ndim - 2)
    return np.pad(frame, pad)


def within_frame(
    detections: sv.Detections, height: int, width: int, *, padded: bool
) -> sv.Detections:
    """Boxes clipped to a height x width frame; when the frame was padded, boxes that lie
    wholly in the padding are dropped (they saw nothing of the frame)."""
    if len(detections) == 0:
        return detections
    xyxy = detections.xyxy.copy()
    keep = (xyxy[:, 0] < width) & (xyxy[:, 1] < height)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, width)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, height)
    detections.xyxy = xyxy
    mask = detections.mask
    if mask is not None and tuple(np.shape(mask)[1:]) != (height, width):
        detections.mask = np.asarray(mask, dtype=bool)[:, :height, :width]
    if not padded:
        return detections
    kept = detections[keep]
    assert isinstance(kept, sv.Detections)
    return kept
