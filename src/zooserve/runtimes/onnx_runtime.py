"""ONNX Runtime on the zoo's devices: the providers a session asks for, an arena bounded by
the model's claim, and a check that a session meant for CUDA really runs there.

The CPU build of `onnxruntime` (the base dependency) has no CUDA provider; ORT then falls back
to the CPU without a word, and a model the ledger counts on the GPU runs on the host. On CUDA a
load therefore fails unless the session's first provider is CUDA's (install the `cuda` extra,
see pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zooserve.core.errors import ModelLoadFailed

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
MB = 1024 * 1024


def device_index(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 0


def cuda_options(device: str, claim_bytes: int | None) -> dict[str, Any]:
    """The CUDA provider's options: the GPU, and an arena that grows only by what is asked
    (`kSameAsRequested`, not powers of two) up to the model's claim (`gpu_mem_limit`)."""
    options: dict[str, Any] = {
        "device_id": device_index(device),
        "arena_extend_strategy": "kSameAsRequested",
    }
    if claim_bytes:
        options["gpu_mem_limit"] = int(claim_bytes)
    return options


def execution_providers(
    device: str, available: Sequence[str], claim_bytes: int | None = None
) -> list[Any]:
    """CUDA first (bounded, see `cuda_options`) on a CUDA device, CPU after it; a CUDA device
    without the CUDA provider is refused here rather than run on the CPU."""
    if not device.startswith("cuda"):
        return [CPU]
    if CUDA not in available:
        raise ModelLoadFailed(
            f"device {device} needs ONNX Runtime's CUDA provider; this build offers "
            f"{list(available)}: install zooserve[cuda] (onnxruntime-gpu) in place of onnxruntime",
            {"available_providers": list(available)},
        )
    return [(CUDA, cuda_options(device, claim_bytes)), CPU]


def require_device(name: str, device: str, session_providers: Sequence[str]) -> None:
    """On CUDA, fail the load unless the session runs on the CUDA provider first (ORT drops
    a provider it cannot start, e.g. without cuDNN, and carries on on the CPU)."""
    if device.startswith("cuda") and (not session_providers or session_providers[0] != CUDA):
        raise ModelLoadFailed(
            f"{name}: ONNX Runtime session runs on {list(session_providers)}, not on {device}",
            {"session_providers": list(session_providers)},
        )


def claim_bytes(vram_mb: float | None) -> int | None:
    """The bytes a model is admitted by before it is measured: its configured estimate."""
    return int(vram_mb * MB) if vram_mb else None


def warmup_batch_size(options: Mapping[str, Any]) -> int:
    """The largest batch the model's lane hands it (`max_batch_size`, else `batch_size`, else
    4, as the manager's lanes read them): warming up at it grows ORT's arena to that batch's
    activations inside the measuring window, not at the first large request."""
    return max(1, int(options.get("max_batch_size", options.get("batch_size", 4))))
