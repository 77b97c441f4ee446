"""OSNet person re-identification embeddings from an exported ONNX model, on ONNX Runtime.

OSNet (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019) maps
a person crop to an appearance vector; trackers and re-id match people by cosine similarity.
Released OSNet models (torchreid, boxmot) are exported to ONNX with input (N, 3, 256, 128):
RGB resized to 256x128 (H x W), scaled to 0..1 and normalised with the ImageNet mean and std.
The raw output (N, 512) is L2-normalised here.

Options: `input_size` [H, W] when the ONNX input has symbolic spatial dimensions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from zooserve.catalog import ModelSpec
from zooserve.core.errors import InvalidInput, MissingDependency, ModelLoadFailed, ModelUnavailable
from zooserve.families.base import Image
from zooserve.families.kinds import Embedder
from zooserve.runtimes.onnx_runtime import (
    claim_bytes,
    execution_providers,
    require_device,
    warmup_batch_size,
)

log = logging.getLogger("zooserve.families.osnet")

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DEFAULT_INPUT_SIZE = (256, 128)  # H, W
DEFAULT_EMBED_DIM = 512
INSTALL_HINT = "osnet runs on ONNX Runtime: pip install onnxruntime (or onnxruntime-gpu)"


class OsnetEmbedder(Embedder):
    """Person crops (any size, RGB) -> (N, 512) float32 unit vectors."""

    family = "osnet"

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        self.session: Any = None
        self.input_name = ""
        self.input_size = DEFAULT_INPUT_SIZE
        self.input_dtype: type[np.floating[Any]] = np.float32
        self.embed_dim = DEFAULT_EMBED_DIM
        self.fixed_batch: int | None = None

    def load(self) -> None:
        """Open an inference session; reads input size, dtype and batch layout from the model."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependency(INSTALL_HINT, {"package": "onnxruntime"}) from exc
        if not Path(self.source).is_file():
            raise ModelUnavailable(
                f"OSNet ONNX file not found: {self.source}", {"source": self.source}
            )
        available = ort.get_available_providers()
        providers = execution_providers(self.device, available, claim_bytes(self.spec.vram_mb))
        try:
            session = ort.InferenceSession(self.source, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise ModelLoadFailed(
                f"{self.spec.name}: ONNX Runtime cannot load {Path(self.source).name}: {exc}",
                {"source": self.source},
            ) from exc
        require_device(self.spec.name, self.device, session.get_providers())
        (model_input,) = session.get_inputs()[:1]
        batch, _, height, width = model_input.shape
        configured = self.spec.options.get("input_size")
        if isinstance(height, int) and isinstance(width, int):
            self.input_size = (height, width)
        elif configured is not None:
            self.input_size = (int(configured[0]), int(configured[1]))
        self.fixed_batch = batch if isinstance(batch, int) else None
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        dim = session.get_outputs()[0].shape[-1]
        self.embed_dim = dim if isinstance(dim, int) else DEFAULT_EMBED_DIM
        self.input_name = model_input.name
        self.session = session

    def memory_bytes(self) -> int:
        """The ONNX file's size: the weights ORT holds. Its arena (activations, workspace) is
        not counted; on the CPU it is not measurable apart from the process."""
        return Path(self.source).stat().st_size if self.session is not None else 0

    def warmup(self) -> None:
        crop = np.zeros((64, 32, 3), dtype=np.uint8)
        self.embed_images([crop] * warmup_batch_size(self.spec.options))

    def embed_images(self, images: Sequence[Image]) -> np.ndarray:
        """(N, 512) float32, unit L2 norm; an empty batch gives (0, 512)."""
        batch = self.preprocess(images)
        return self.postprocess(self.forward(batch))

    def preprocess(self, images: Sequence[Image]) -> np.ndarray:
        """(N, 3, H, W) normalised RGB in the model's input dtype."""
        height, width = self.input_size
        out = np.empty((len(images), 3, height, width), dtype=np.float32)
        for i, image in enumerate(images):
            crop = np.asarray(image)
            if crop.ndim != 3 or crop.shape[2] != 3 or 0 in crop.shape:
                raise InvalidInput(
                    f"crop {i} must be RGB (H, W, 3), got shape {crop.shape}", {"index": i}
                )
            resized = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
            normalised = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
            out[i] = normalised.transpose(2, 0, 1)
        return out.astype(self.input_dtype, copy=False)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Run the session (the only step on the device). Models exported with a fixed batch
        size are fed in chunks of that size, the last one zero-padded."""
        if len(batch) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        assert self.session is not None, "load() first"
        step = self.fixed_batch or len(batch)
        outputs = []
        for start in range(0, len(batch), step):
            chunk = batch[start : start + step]
            if len(chunk) < step:
                padding = np.zeros((step - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, padding])
            outputs.append(self.session.run(None, {self.input_name: chunk})[0])
        return np.concatenate(outputs)[: len(batch)].reshape(len(batch), -1)

    @staticmethod
    def postprocess(raw: np.ndarray) -> np.ndarray:
        vectors = raw.astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
