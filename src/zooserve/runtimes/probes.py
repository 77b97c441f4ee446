"""Device memory probes: what the device says, not what the config estimates.

One protocol (`MemoryProbe`) for the CPU and for CUDA, so the manager and its tests share the
code and only the device differs. On CUDA, torch's allocator gives a model's tensors and a
warm-up's peak; NVML gives this process's figure across every allocator (ONNX Runtime's arena,
cuDNN workspaces). `auto_budget_bytes` turns them into the "auto" budget.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psutil
import torch

from zooserve.runtimes.nvml import nvml_used_bytes

MB = 1024 * 1024


class _SpecOptions(Protocol):
    @property
    def options(self) -> dict[str, Any]: ...


class MeasuredModel(Protocol):
    """What measuring needs of a model (`families.base.ModelAdapter`, a floor above, is one):
    declared here so runtimes imports nothing from the families."""

    @property
    def spec(self) -> _SpecOptions: ...
    def load(self) -> None: ...
    def warmup(self) -> None: ...
    def unload(self) -> None: ...
    def torch_modules(self) -> list[torch.nn.Module]: ...
    def memory_bytes(self) -> int: ...


class MemoryProbe(Protocol):
    """What the manager needs from a device; injectable so scheduler tests need no GPU."""

    device: str

    def total_bytes(self) -> int: ...
    def free_bytes(self) -> int:
        """Memory free on the device now (at start: what the budget may take)."""
        ...

    def measure_load(self, adapter: MeasuredModel, before: int) -> int: ...
    def allocated_bytes(self) -> int: ...
    def reserved_bytes(self) -> int: ...
    def reset_peak(self) -> None: ...
    def peak_bytes(self) -> int: ...
    def release_cache(self) -> None: ...
    def process_device_bytes(self) -> int | None:
        """Device memory this process holds by every allocator (NVML), None if unknown."""
        ...


def rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


class CpuProbe:
    """On the CPU a model's footprint is its tensor bytes (parameters + buffers)."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def total_bytes(self) -> int:
        return int(psutil.virtual_memory().available)

    def free_bytes(self) -> int:
        return int(psutil.virtual_memory().available)

    def measure_load(self, adapter: MeasuredModel, before: int) -> int:
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

    def process_device_bytes(self) -> int | None:
        return None


class CudaProbe:
    """This process's CUDA allocator (peak during warm-up) and its NVML figure (all allocators).

    Args:
        device: "cuda" or "cuda:N".
        process_bytes: reads this process's device memory; injectable (tests have no GPU),
            default NVML via `nvml_process_bytes`.
    """

    def __init__(self, device: str, process_bytes: Callable[[], int | None] | None = None) -> None:
        self.device = device
        self.index = torch.device(device).index or 0
        self._process_bytes = process_bytes or self._nvml_process_bytes
        self.nvml_scope = "process"  # "device" where NVML lists no PID of ours (containers)

    def total_bytes(self) -> int:
        return int(torch.cuda.get_device_properties(self.index).total_memory)

    def free_bytes(self) -> int:
        """The driver's free figure: the CUDA context, torch's cache (reserved, allocated or
        not) and every other process are already taken out of it."""
        return int(torch.cuda.mem_get_info(self.index)[0])

    def measure_load(self, adapter: MeasuredModel, before: int) -> int:
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
        torch.cuda.synchronize(self.index)  # the peak of the work queued so far, all of it
        return int(torch.cuda.max_memory_allocated(self.index))

    def release_cache(self) -> None:
        gc.collect()
        torch.cuda.empty_cache()

    def process_device_bytes(self) -> int | None:
        return self._process_bytes()

    def _nvml_process_bytes(self) -> int | None:
        try:
            torch.cuda.synchronize(self.index)
            uuid: str | None = str(torch.cuda.get_device_properties(self.index).uuid)
        except Exception:
            uuid = None
        used, self.nvml_scope = nvml_used_bytes(self.index, uuid)
        return used


#: Left free beside an "auto" budget on CUDA: cuDNN/cuBLAS workspaces, allocator slack.
CUDA_MARGIN_BYTES = 1024 * MB


@dataclass(frozen=True)
class DeviceOverhead:
    """What this process holds on the device that no ledger claim counts."""

    #: The CUDA context with cuBLAS/cuDNN workspaces and any allocator outside torch: NVML's
    #: figure for the process less torch's reserved bytes (0 where NVML cannot say).
    cuda_context_bytes: int
    #: Torch's cache beyond its live tensors (reserved - allocated): held, yet in no claim.
    cached_free_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.cuda_context_bytes + self.cached_free_bytes


def device_overhead(probe: MemoryProbe) -> DeviceOverhead:
    """The device memory of this process outside the ledger, now (none on the CPU)."""
    if not probe.device.startswith("cuda"):
        return DeviceOverhead(0, 0)
    reserved = probe.reserved_bytes()
    process = probe.process_device_bytes()
    context = max(0, process - reserved) if process is not None else 0
    return DeviceOverhead(context, max(0, reserved - probe.allocated_bytes()))


def auto_budget_bytes(probe: MemoryProbe) -> int:
    """`memory_budget_mb: auto`: half the available RAM on the CPU; on CUDA 0.9 x the device's
    memory less what this process holds outside the ledger at start (`device_overhead`: the
    whole process must stay within that share), and never more than was free at start less a
    margin (another process, or this one's context and cache, already holds the rest)."""
    if not probe.device.startswith("cuda"):
        return int(probe.total_bytes() * 0.5)
    share = 0.9 * probe.total_bytes() - device_overhead(probe).total_bytes
    return max(0, int(min(share, probe.free_bytes() - CUDA_MARGIN_BYTES)))


def probe_for(device: str) -> MemoryProbe:
    return CudaProbe(device) if device.startswith("cuda") else CpuProbe(device)
