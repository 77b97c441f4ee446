"""Measuring a model: its footprint at load, what its unload gave back.

A model's footprint is the bytes of its own tensors (parameters + buffers), on CUDA as on the
CPU: process-wide figures move with every other model's inference. On the CPU the process RSS
is reported beside, because RSS moves by allocator reuse and one-off caches far more than by one
model (FACTS.md). On CUDA two figures need the device to be quiet (no other model's call
running, see `InferencePool.quiet`): the warm-up's peak (torch's allocator) and, for models whose
memory lives outside torch (ONNX Runtime), this process's NVML figure before and after loading.
The probes themselves are in probes.py (re-exported here: the manager's one import).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from zooserve.runtimes.nvml import nvml_device_memory as nvml_device_memory
from zooserve.runtimes.nvml import nvml_process_bytes as nvml_process_bytes
from zooserve.runtimes.probes import CUDA_MARGIN_BYTES as CUDA_MARGIN_BYTES
from zooserve.runtimes.probes import MB as MB
from zooserve.runtimes.probes import CpuProbe as CpuProbe
from zooserve.runtimes.probes import CudaProbe as CudaProbe
from zooserve.runtimes.probes import DeviceOverhead as DeviceOverhead
from zooserve.runtimes.probes import MeasuredModel
from zooserve.runtimes.probes import MemoryProbe as MemoryProbe
from zooserve.runtimes.probes import auto_budget_bytes as auto_budget_bytes
from zooserve.runtimes.probes import device_overhead as device_overhead
from zooserve.runtimes.probes import probe_for as probe_for
from zooserve.runtimes.probes import rss_bytes as rss_bytes

Model = TypeVar("Model", bound=MeasuredModel)


@dataclass(frozen=True)
class LoadFootprint:
    bytes: int  # what the model holds once loaded (the figure the budget uses)
    peak_bytes: int  # bytes + the activations of its warm-up (a forward pass's high-water mark)
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


def holds_torch_modules(adapter: MeasuredModel) -> bool:
    """Whether the adapter's weights live in torch, known before loading: its class overrides
    the contract's `torch_modules` (the first declaration in its MRO, which returns none). One
    that does not (ONNX Runtime, OpenCV) allocates outside torch."""
    owners = [cls for cls in type(adapter).__mro__ if "torch_modules" in vars(cls)]
    return len(owners) > 1


class QuietWindow(Protocol):
    """What `InferencePool.quiet` yields: `calm` turns False if another model's call ran."""

    calm: bool


#: Opens a quiet window: `InferencePool.quiet` (other models' calls wait until it closes).
Quiet = Callable[[], AbstractContextManager[QuietWindow]]


@dataclass
class _NoWindow:
    calm: bool = False  # nothing kept other calls off the device


def admission_bytes(estimate: int | None, measured: int | None, peak: int | None) -> int:
    """Bytes to admit a model by: the largest figure known of the estimate (before any load),
    the measured footprint and its warm-up peak. A model must fit at its peak, not just its
    weights, and an estimate above the measure (a file that grew, another dtype) is honoured
    until a new load measures again. The scheduler admits a load, and keeps room, by this."""
    return max((figure for figure in (estimate, measured, peak) if figure is not None), default=0)


def load_measured(
    adapter: MeasuredModel, probe: MemoryProbe, quiet: Quiet | None = None
) -> LoadFootprint:
    """Load weights, warm up once (see `needs_warmup`), and measure. Unloads and re-raises on
    any failure.

    On CUDA `quiet` (the inference pool's quiet window) keeps other models' calls off the
    device while a process-wide figure is read: around the warm-up (its peak), and around the
    load too for a model outside torch (its NVML delta). Without it, or when calls did not end
    in time, the figures are still taken and `method` ends in "+noisy". On the CPU the tensor
    bytes need no quiet device: inference is never paused there.
    """
    cuda = probe.device.startswith("cuda")
    outside = cuda and not holds_torch_modules(adapter)  # NVML must see the whole load
    open_window: Quiet = (
        quiet if (cuda and quiet is not None) else (lambda: nullcontext(_NoWindow()))
    )
    rss_before = rss_bytes()
    window: QuietWindow | None = None
    device_before: int | None = None
    device_after: int | None = None
    try:
        with ExitStack() as stack:
            if outside:
                window = stack.enter_context(open_window())
                device_before = probe.process_device_bytes()
            adapter.load()
            if cuda and not outside:
                window = stack.enter_context(open_window())
            probe.reset_peak()
            warmup_start = probe.allocated_bytes()
            if needs_warmup(adapter, cuda):
                adapter.warmup()
            activations = max(0, probe.peak_bytes() - warmup_start)
            if outside:
                device_after = probe.process_device_bytes()
    except BaseException:
        adapter.unload()
        probe.release_cache()
        raise
    if not cuda or adapter.torch_modules():
        footprint, method = adapter.memory_bytes(), "tensor_bytes"
    elif device_before is None or device_after is None:
        footprint, method = adapter.memory_bytes(), "weight_bytes"
    else:
        # Read after the warm-up: ONNX Runtime's arena keeps what the warm-up grew. Never
        # below the adapter's own count (weights a session keeps on the host are still its).
        footprint = max(device_after - device_before, adapter.memory_bytes())
        method = f"nvml_{getattr(probe, 'nvml_scope', 'process')}_delta"
    if window is not None and not window.calm:  # read after the window: a call may intrude
        method += "+noisy"
    return LoadFootprint(footprint, footprint + activations, rss_bytes() - rss_before, method)


def needs_warmup(adapter: MeasuredModel, cuda: bool) -> bool:
    """The warm-up forward measures a model's peak activations on CUDA. On the CPU budgets
    count tensor bytes, so it would measure nothing and only slow the load (a full-resolution
    forward can take longer than reading the weights): skipped unless `options.warmup: true`."""
    return cuda or bool(adapter.spec.options.get("warmup", False))


class StorageWatch:
    """Weak references to the distinct storages under some modules' parameters and buffers
    (views and tied weights counted once): how many of their bytes are still alive, held by
    anyone. Unlike the allocator's device-wide figure before and after, what other lanes
    allocate or free meanwhile does not move it."""

    def __init__(self, modules: Sequence[torch.nn.Module]) -> None:
        storages = {
            t.untyped_storage().data_ptr(): t.untyped_storage()
            for module in modules
            for t in (*module.parameters(), *module.buffers())
        }
        self._refs = [(StorageWeakRef(s), s.nbytes()) for s in storages.values()]

    def alive_bytes(self) -> int:
        return sum(nbytes for ref, nbytes in self._refs if not ref.expired())

    def freed_bytes(self) -> int:
        return sum(nbytes for ref, nbytes in self._refs if ref.expired())


def unload_verified(holder: list[Model], expected: int, probe: MemoryProbe) -> UnloadOutcome:
    """Drop the adapter (the caller passes its only reference inside `holder`) and verify.

    Verification: every torch module the adapter held must be garbage-collected; on CUDA the
    bytes recovered are the measured bytes less the storages of its tensors still alive (see
    `StorageWatch`): not the allocator's device-wide figure before and after, which other
    lanes move meanwhile (a false `unload_incomplete`, or a leak hidden by their frees).
    Memory outside torch (ONNX Runtime, OpenCV) is invisible to torch, so there the CPU rule
    applies.
    """
    adapter = holder.pop()
    modules = [weakref.ref(module) for module in adapter.torch_modules()]
    storages = StorageWatch(adapter.torch_modules())
    rss_before = rss_bytes()
    adapter.unload()
    del adapter
    # gc.collect() costs ~0.25 s with torch and transformers imported: on the CPU it is only
    # needed when reference counting did not already free every module (cycles, leaks).
    freed = bool(modules) and all(ref() is None for ref in modules)
    if not freed or probe.device.startswith("cuda"):
        probe.release_cache()
    leaked = sum(ref() is not None for ref in modules)
    if probe.device.startswith("cuda") and modules:
        recovered = max(0, expected - storages.alive_bytes())
    else:
        recovered = expected if leaked == 0 else 0
    return UnloadOutcome(recovered, expected, rss_bytes() - rss_before, leaked)
