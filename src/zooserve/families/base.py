"""The adapter contract every model family implements, and the `Detector` kind.

A family file subclasses one kind's contract (`Detector` here, the others in kinds.py), often
over its backend's base (`hf/adapter.py` for transformers), and is registered in
`families/__init__.py`. The manager calls `load()` on its dedicated loader thread and `unload()`
when evicting; pipelines call the kind's method (e.g. `detect`) in the inference pool. Only
`forward` may touch the device (`run_stages` runs the three stages of a kind's method).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import supervision as sv
import torch

from zooserve.catalog import ModelSpec
from zooserve.families.shipped import ShippedWeights
from zooserve.runtimes.torch_runtime import inference_dtype, module_bytes

#: RGB uint8 image, shape (H, W, 3).
Image = np.ndarray

UNKNOWN_SIZE_BYTES = 256 * 2**20
"""The size the manager assumes for a model when nothing at all can be estimated (no
`vram_mb`, no weight file it recognises, no config.json to count parameters from). Not 0,
which would admit any number of such models past the budget; a small model's size, so one still
fits a small budget. The measured footprint replaces it after the first load."""

#: Files whose bytes are a checkpoint's weights.
WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".onnx"})


class ModelAdapter(ABC):
    """One loaded model: weights, processor and whatever caches it needs.

    Args:
        spec: the model's config entry.
        source: where the weights are: a local directory/file path, or a package resource id.
        device: concrete torch device string ("cpu", "cuda:0").
    """

    family: ClassVar[str]
    kind: ClassVar[str]
    #: Weights an installed package ships (`scheme:name` model id), if the family's are such.
    shipped: ClassVar[ShippedWeights | None] = None

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
        return cls.shipped.source(model_id) if cls.shipped else None

    @classmethod
    def estimate_bytes(cls, source: str, device: str) -> int | None:
        """Estimate the loaded size before loading: weight-file bytes x dtype factor; with no
        weight file, the parameters its transformers config.json describes; else None. Shipped
        weights count as stored (see `ShippedWeights`)."""
        if cls.shipped:
            return cls.shipped.file_bytes(source)
        path = Path(source)
        if not path.exists():
            return None
        files = (
            [path]
            if path.is_file()
            else [p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
        )
        if not files:
            return config_estimate_bytes(path, device)
        size = sum(p.stat().st_size for p in files)
        # Checkpoints here are fp32; half precision on CUDA halves them.
        return size // 2 if device.startswith("cuda") else size


def config_estimate_bytes(directory: Path, device: str) -> int | None:
    """Bytes of the model that `directory/config.json` (transformers) describes, or None when
    it cannot be read. Reads no weights and downloads nothing.

    Floating tensors count at 2 bytes on CUDA (the adapters run half precision there), else at
    the checkpoint's stored dtype (config `dtype`/`torch_dtype`, fp32 if unset), as the
    weight-file estimate does; integer buffers at their own size.
    """
    config_json = directory / "config.json"
    try:
        stat = config_json.stat()
        data = json.loads(config_json.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or _names_a_hub_backbone(data):
        return None
    counted = _count_tensors(str(directory), stat.st_mtime_ns, stat.st_size)
    if counted is None:
        return None
    floating, other_bytes = counted
    if device.startswith("cuda"):
        float_bytes = 2
    else:
        stored = getattr(torch, str(data.get("dtype") or data.get("torch_dtype") or ""), None)
        float_bytes = (
            stored.itemsize if isinstance(stored, torch.dtype) and stored.is_floating_point else 4
        )
    return floating * float_bytes + other_bytes


def _names_a_hub_backbone(data: Any) -> bool:
    """True when a (nested) config names its `backbone` without a `backbone_config`:
    transformers then asks the hub whether that name is a repository while reading it."""
    if isinstance(data, list):
        return any(_names_a_hub_backbone(item) for item in data)
    if not isinstance(data, dict):
        return False
    if data.get("backbone") and not data.get("backbone_config"):
        return True
    return any(_names_a_hub_backbone(value) for value in data.values())


@lru_cache(maxsize=64)
def _count_tensors(directory: str, mtime_ns: int, size: int) -> tuple[int, int] | None:
    """(floating elements, bytes of other tensors) of the parameters and buffers of the model
    a config describes, built on the meta device (no memory, no weights). The config's file
    time and size key the cache, so an edited config is counted again."""
    try:
        import transformers

        config = transformers.AutoConfig.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
        names = getattr(config, "architectures", None) or [""]
        model_class = getattr(transformers, str(names[0]), None)
        with torch.device("meta"):
            if isinstance(model_class, type) and issubclass(
                model_class, transformers.PreTrainedModel
            ):
                model = model_class(config)
            else:
                model = transformers.AutoModel.from_config(config)
    except Exception:  # unknown model type, remote code, a broken config: no estimate
        return None
    floating = other_bytes = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            floating += tensor.numel()
        else:
            other_bytes += tensor.numel() * tensor.element_size()
    return floating, other_bytes


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
        detections: list[sv.Detections] = run_stages(self, (images, prompts), threshold)
        return detections

    @abstractmethod
    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> Any:
        """CPU-side preparation; returns whatever `forward` needs."""

    @abstractmethod
    def forward(self, batch: Any) -> Any:
        """The only step that touches the device."""

    @abstractmethod
    def postprocess(self, raw: Any, batch: Any, threshold: float) -> list[sv.Detections]:
        """Convert raw outputs to one `sv.Detections` per image, boxes in input pixels."""


def run_stages(adapter: Any, inputs: tuple[Any, ...], *options: Any) -> Any:
    """`adapter.preprocess(*inputs)` on the CPU, `forward` with autograd off (the only step on
    the device), then `postprocess(raw, batch, *options)`: a kind's method, in three stages."""
    batch = adapter.preprocess(*inputs)
    with torch.inference_mode():
        raw = adapter.forward(batch)
    return adapter.postprocess(raw, batch, *options)


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
