"""transformers helpers: offline loading, moving processor outputs, processor calls on arrays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


def load_pretrained(
    processor_class: Any,
    model_class: Any,
    source: str,
    dtype: torch.dtype,
    device: str = "cpu",
) -> tuple[Any, Any]:
    """A processor and a model from the local checkpoint `source` (never a model hub).

    On CUDA the weights go straight from the safetensors files to the device (`device_map`),
    with no detour through host memory; callers still `.to(device)` (then a no-op).
    """
    processor = processor_class.from_pretrained(source, local_files_only=True)
    placement = {"device_map": device} if device.startswith("cuda") else {}
    model = model_class.from_pretrained(source, dtype=dtype, local_files_only=True, **placement)
    return processor, model


def to_device(
    inputs: Mapping[str, torch.Tensor], device: str, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Move processor outputs to the device; only floating tensors (pixels) take `dtype`."""
    return {
        name: tensor.to(device, dtype=dtype) if tensor.is_floating_point() else tensor.to(device)
        for name, tensor in inputs.items()
    }


def process_images(processor: Any, images: Sequence[np.ndarray], **extra: Any) -> Any:
    """An image processor's tensors for RGB arrays (H, W, 3).

    The layout is given as channels-last: left to guess, the processor reads an image 1 or 3
    pixels high as channels-first.
    """
    return processor(
        images=list(images), return_tensors="pt", input_data_format="channels_last", **extra
    )
