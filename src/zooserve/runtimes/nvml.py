"""NVML's figures of device memory: this process's (every allocator: torch, ONNX Runtime's
arena, cuDNN workspaces) and the whole device's. Each reader returns None where NVML cannot
say (no driver, MIG, WDDM), so callers fall back instead of failing."""

from __future__ import annotations

import os
from typing import Any


def nvml_device_memory(index: int = 0, uuid: str | None = None) -> dict[str, int] | None:
    """Whole-device figures from NVML (all processes), shown beside this process's own."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = _nvml_handle(pynvml, index, uuid)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return {"total": int(info.total), "used": int(info.used), "free": int(info.free)}
    except Exception:
        return None


def nvml_process_bytes(index: int, uuid: str | None = None, pid: int | None = None) -> int | None:
    """Device memory NVML counts for process `pid` (default: this one) on one GPU.

    It covers every allocator of the process (torch, ONNX Runtime's arena, cuDNN workspaces).
    The GPU is found by `uuid` when given (torch's index is not NVML's under
    CUDA_VISIBLE_DEVICES), else by `index`. None where NVML cannot say: no driver, a process
    NVML does not list under our pid (another PID namespace, as in many containers), or a
    figure it does not report (MIG, WDDM).
    """
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = _nvml_handle(pynvml, index, uuid)
        wanted = os.getpid() if pid is None else pid
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == wanted:
                used = process.usedGpuMemory
                return int(used) if isinstance(used, int) else None
        return None
    except Exception:
        return None


def _nvml_handle(pynvml: Any, index: int, uuid: str | None) -> Any:
    """The GPU by `uuid` when given (torch's index is not NVML's under CUDA_VISIBLE_DEVICES)."""
    if uuid:
        name = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        return pynvml.nvmlDeviceGetHandleByUUID(name)
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def nvml_used_bytes(index: int, uuid: str | None = None) -> tuple[int | None, str]:
    """(bytes, scope): this process's NVML figure, else, where NVML lists no PID of ours (a
    container's PID namespace), the whole device's used bytes, scope "device". A change of
    the device-wide figure inside a quiet window is still the change a load made."""
    own = nvml_process_bytes(index, uuid)
    if own is not None:
        return own, "process"
    whole = nvml_device_memory(index, uuid)
    return (whole["used"], "device") if whole else (None, "process")
