"""Memory probes: what the device says, not what the config estimates.

CUDA: `torch.cuda` allocator figures of *this process* (NVML is reported beside for the whole
device). CPU: the bytes of a model's tensors, with the process RSS reported beside, because RSS
moves by allocator reuse and one-off caches far more than by one model (FACTS.md).
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass
from typing import Protocol

import psutil
import torch

from zooserve.families.base import ModelAdapter

MB = 1024 * 1024


@dataclass(frozen=True)
class LoadFootprint:
    bytes: int  # what the model holds once loaded (the figure the budget uses)
    peak_bytes: int  # highest extra memory seen during load + warm-up
    rss_delta: int  # process RSS change, reported only
    method: str  # how `bytes` was measured


@dataclass(frozen=True)
class UnloadOutcome:
    recovered_bytes: int
    expected_bytes: int
    rss_delta: int
    leaked_modules: int  # torch modules still alive after unload + gc

    @property
    def verified(self) -> bool:
        if self.leaked_modules:
            return False
        return self.expected_bytes == 0 or self.recovered_bytes >= 0.9 * self.expected_bytes


class MemoryProbe(Protocol):
    """What the manager needs from a device; injectable so scheduler tests need no GPU."""

    device: str

    def total_bytes(self) -> int: ...
    def measure_load(self, adapter: ModelAdapter, before: int) -> int: ...
    def allocated_bytes(self) -> int: ...
    def reserved_bytes(self) -> int: ...
    def reset_peak(self) -> None: ...
    def peak_bytes(self) -> int: ...
    def release_cache(self) -> None: ...


def rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


class CpuProbe:
    """On the CPU a model's footprint is its tensor bytes (parameters + buffers)."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def total_bytes(self) -> int:
        return int(psutil.virtual_memory().available)

    def measure_load(self, adapter: ModelAdapter, before: int) -> int:
        return adapter.memory_bytes()

    def allocated_bytes(self) -> int:
        return 0

    def reserved_bytes(self) -> int:
        return 0

    def reset_peak(self) -> None:
        pass

    def peak_bytes(self) -> int:
        return 0

    def release_cache(self) -> None:
        gc.collect()


class CudaProbe:
    """This process's CUDA allocator: allocated before/after a load, peak during warm-up."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.index = torch.device(device).index or 0

    def total_bytes(self) -> int:
        return int(torch.cuda.get_device_properties(self.index).total_memory)

    def measure_load(self, adapter: ModelAdapter, before: int) -> int:
        torch.cuda.synchronize(self.index)
        allocated = max(0, self.allocated_bytes() - before)
        if not adapter.torch_modules():
            # ONNX Runtime / OpenCV allocate outside torch's allocator: take the larger of what
            # torch saw and the adapter's own count (its weight bytes).
            return max(allocated, adapter.memory_bytes())
        return allocated

    def allocated_bytes(self) -> int:
        return int(torch.cuda.memory_allocated(self.index))

    def reserved_bytes(self) -> int:
        return int(torch.cuda.memory_reserved(self.index))

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.index)

    def peak_bytes(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.index))

    def release_cache(self) -> None:
        gc.collect()
        torch.cuda.empty_cache()


def probe_for(device: str) -> MemoryProbe:
    return CudaProbe(device) if device.startswith("cuda") else CpuProbe(device)


def nvml_device_memory(index: int = 0) -> dict[str, int] | None:
    """Whole-device figures from NVML (all processes), shown beside this process's own."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return {"total": int(info.total), "used": int(info.used), "free": int(info.free)}
    except Exception:
        return None


def load_measured(adapter: ModelAdapter, probe: MemoryProbe) -> LoadFootprint:
    """Load weights, warm up once, and measure. Unloads and re-raises on any failure."""
    before = probe.allocated_bytes()
    rss_before = rss_bytes()
    probe.reset_peak()
    try:
        adapter.load()
        adapter.warmup()
    except BaseException:
        adapter.unload()
        probe.release_cache()
        raise
    footprint = probe.measure_load(adapter, before)
    peak = max(footprint, probe.peak_bytes() - before)
    method = "torch.cuda.memory_allocated" if probe.device.startswith("cuda") else "tensor_bytes"
    return LoadFootprint(footprint, peak, rss_bytes() - rss_before, method)


def unload_verified(holder: list[ModelAdapter], expected: int, probe: MemoryProbe) -> UnloadOutcome:
    """Drop the adapter (the caller passes its only reference inside `holder`) and verify.

    Verification: every torch module the adapter held must be garbage-collected; on CUDA the
    allocator must also give back (about) the measured bytes. Memory outside torch (ONNX
    Runtime, OpenCV) is invisible to that allocator, so there the CPU rule applies.
    """
    adapter = holder.pop()
    modules = [weakref.ref(module) for module in adapter.torch_modules()]
    before = probe.allocated_bytes()
    rss_before = rss_bytes()
    adapter.unload()
    del adapter
    probe.release_cache()
    leaked = sum(ref() is not None for ref in modules)
    if probe.device.startswith("cuda") and modules:
        recovered = max(0, before - probe.allocated_bytes())
    else:
        recovered = expected if leaked == 0 else 0
    return UnloadOutcome(recovered, expected, rss_bytes() - rss_before, leaked)
