"""The host tier: an evicted model parks in pinned host memory and wakes by a copy.

Reloading a model reads its files, builds the architecture and copies the weights; waking a
parked one is only the copy back (pinned memory copies at full PCIe speed). Parking applies to
models whose weights are torch modules; the rest (ONNX Runtime, OpenCV) unload to disk, the
last tier. Parked models have their own budget (`host_memory_budget_mb`); when it is full the
least recently parked go to disk. Park and wake run on the loader thread, one at a time, and
are verified: a park that fails (pinning with host memory short) or does not give the device
memory back (its storages still held outside its modules) becomes a full unload; a park reports
the bytes it freed itself, not the bytes expected. Quantized
models never park (`.to()` of an 8-bit model raises).

A parked model's weights are ONE pinned allocation with every tensor a view into it, copied
straight from the device: torch's pinned allocator would round each tensor up to a power of
two and keep freed blocks cached, and `module.to("cpu")` first would double the RAM.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil
import torch

from zooserve.catalog import Config
from zooserve.families.base import ModelAdapter
from zooserve.runtimes.memory import MB, MemoryProbe, StorageWatch

#: Moves modules between the device and the host, returning the host bytes it holds them in
#: (None: not known); injectable so CPU-only tests can run the tier logic against an injected
#: device.
Mover = Callable[[Sequence[torch.nn.Module], str], int | None]
#: Allocates a host buffer of n bytes (uint8) for one parked model.
Allocate = Callable[[int], torch.Tensor]
#: Each storage starts on a 64-byte boundary in the packed buffer (any dtype's alignment).
ALIGN = 64

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParkOutcome:
    parked: bool
    freed_bytes: int  # the storages the move itself freed (0 on the CPU: weights stay in RAM)
    pushed: list[ModelAdapter]  # pushed out of the host tier to make room: to disk


def host_budget_bytes(config: Config, device: str) -> int:
    """Pinned host memory for parked models: on CUDA "auto" is a quarter of the RAM (at most
    32 GiB); on the CPU parking saves nothing (the weights are in RAM already)."""
    setting = config.host_memory_budget_mb
    if setting != "auto":
        return int(float(setting) * MB)
    if not device.startswith("cuda"):
        return 0
    return int(min(psutil.virtual_memory().total / 4, 32 * 1024 * MB))


def pinned_buffer(nbytes: int) -> torch.Tensor:
    """`nbytes` of page-locked host memory, exactly: a plain allocation registered with CUDA
    (not torch's caching pinned allocator), unregistered and given back when the tensor goes."""
    buffer = torch.empty(nbytes, dtype=torch.uint8)
    cudart = torch.cuda.cudart()
    pointer = buffer.data_ptr()
    status = cudart.cudaHostRegister(pointer, nbytes, 0)
    if int(status) != 0:
        raise MemoryError(f"cudaHostRegister of {nbytes} bytes failed ({status})")
    weakref.finalize(buffer, cudart.cudaHostUnregister, pointer)
    return buffer


def pack_to_host(modules: Sequence[torch.nn.Module], allocate: Allocate) -> int:
    """Copy every parameter and buffer of `modules` into one host buffer from `allocate` and
    make each tensor a view into it (shared storages stay shared). Returns the buffer's bytes."""
    tensors = list({id(t): t for m in modules for t in (*m.parameters(), *m.buffers())}.values())
    offsets: dict[int, int] = {}
    storages: list[tuple[torch.UntypedStorage, int]] = []
    total = 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in offsets:
            offsets[storage.data_ptr()] = total
            storages.append((storage, total))
            total += -(-storage.nbytes() // ALIGN) * ALIGN
    buffer = allocate(total)
    for storage, offset in storages:
        source = torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage)
        buffer[offset : offset + storage.nbytes()].copy_(source)
    host = buffer.untyped_storage()
    for tensor in tensors:
        start = offsets[tensor.untyped_storage().data_ptr()] // tensor.element_size()
        view = torch.empty(0, dtype=tensor.dtype)
        view.set_(host, start + tensor.storage_offset(), tensor.size(), tensor.stride())
        tensor.data = view
    return total


def move_modules(modules: Sequence[torch.nn.Module], device: str) -> int | None:
    """`device` "cpu": into one pinned host allocation (see `pack_to_host`; returns its
    bytes); else to that device (asynchronous copies from pinned memory, then one
    synchronize), after which the host buffer is freed with its last view."""
    if device == "cpu":
        if torch.cuda.is_available():
            return pack_to_host(modules, pinned_buffer)
        for module in modules:
            module.to("cpu")
        return None
    for module in modules:
        module.to(device, non_blocking=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))
    return None


class HostTier:
    """Parked adapters by model name, least recently parked first, within `budget_bytes`."""

    def __init__(self, budget_bytes: int, device: str, mover: Mover = move_modules) -> None:
        self.budget_bytes = budget_bytes
        self.device = device
        self.mover = mover
        self._parked: OrderedDict[str, tuple[ModelAdapter, int]] = OrderedDict()
        self._lock = threading.Lock()  # park/wake on the loader thread, reads on the loop

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._used_locked()

    def holds(self, name: str) -> bool:
        with self._lock:
            return name in self._parked

    def can_park(self, adapter: ModelAdapter, nbytes: int) -> bool:
        """Torch weights that fit the tier; never quantized ones (`.to()` of an 8-bit model
        raises, and they are cheap to read again)."""
        quantized = adapter.spec.quantization is not None
        return 0 < nbytes <= self.budget_bytes and bool(adapter.torch_modules()) and not quantized

    def park(
        self, name: str, adapter: ModelAdapter, nbytes: int, probe: MemoryProbe
    ) -> ParkOutcome:
        """Move `adapter` to the host (loader thread); on CUDA only if its storages really
        left the device (see `StorageWatch`: other lanes' allocations do not count)."""
        storages = StorageWatch(adapter.torch_modules())
        try:
            host_bytes = self.mover(adapter.torch_modules(), "cpu")
        except Exception as error:  # host memory short, a module that cannot move
            # The weights are still (partly) on the device: the caller unloads for real. Only
            # the text is logged: the exception's traceback would keep the modules alive.
            log.warning("parking %s failed, unloading it instead: %s", name, repr(error))
            probe.release_cache()
            return ParkOutcome(False, 0, [])
        probe.release_cache()
        freed = storages.freed_bytes()
        if probe.device.startswith("cuda") and freed < 0.9 * nbytes:
            return ParkOutcome(False, freed, [])  # tensors held elsewhere stayed: unload it
        nbytes = max(nbytes, host_bytes or 0)  # the host bytes it really holds
        pushed: list[ModelAdapter] = []
        with self._lock:
            while self._parked and self._used_locked() + nbytes > self.budget_bytes:
                _, (oldest, _) = self._parked.popitem(last=False)
                pushed.append(oldest)
            self._parked[name] = (adapter, nbytes)
        return ParkOutcome(True, freed, pushed)

    def _used_locked(self) -> int:
        return sum(nbytes for _, nbytes in self._parked.values())

    def take(self, name: str) -> ModelAdapter | None:
        """Remove a parked adapter (to wake it, or to drop it to disk)."""
        with self._lock:
            entry = self._parked.pop(name, None)
        return entry[0] if entry else None

    def wake(self, adapter: ModelAdapter) -> None:
        """Copy a parked adapter's modules back to the device (loader thread)."""
        self.mover(adapter.torch_modules(), self.device)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._parked)
