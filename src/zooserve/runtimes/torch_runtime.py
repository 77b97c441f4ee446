"""PyTorch runtime helpers: device resolution, inference dtype, and tensor byte counts."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def resolve_device(setting: str) -> str:
    """The config's `device` (auto, cpu, cuda, cuda:N) as a concrete torch device string."""
    if setting == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if setting == "cuda":
        return "cuda:0"
    return setting


def inference_dtype(device: str) -> torch.dtype:
    """Half precision on CUDA (bf16 where supported, it is safer for detectors), fp32 on CPU."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def module_bytes(modules: Iterable[torch.nn.Module]) -> int:
    """Bytes held by parameters and buffers (each storage counted once, tied weights too)."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key in seen or storage.nbytes() == 0:
                continue
            seen.add(key)
            total += storage.nbytes()
    return total
