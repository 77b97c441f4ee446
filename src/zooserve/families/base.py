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

    def detect(
        self, images: Sequence[Image], prompts: Sequence[str] | None, threshold: float
    ) -> list[sv.Detections]:
        """Detect in a batch of RGB images. Prompts apply to every image of the batch."""
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
