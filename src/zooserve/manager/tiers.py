"""The host tier: an evicted model parks in pinned host memory and wakes by a copy.

Reloading a model reads its files, builds the architecture and copies the weights; waking a
parked one is only the copy back (pinned memory copies at full PCIe speed). Parking applies to
models whose weights are torch modules; the rest (ONNX Runtime, OpenCV) unload to disk, the
last tier. Parked models have their own budget (`host_memory_budget_mb`); when it is full the
least recently parked go to disk. Park and wake run on the loader thread, one at a time, and
are verified: a park that does not give the device memory back (an adapter holding tensors
outside its modules) is undone into a full unload.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import psutil
import torch

from zooserve.catalog import Config
from zooserve.families.base import ModelAdapter
from zooserve.memory import MB, MemoryProbe

#: Moves modules between the device and the host; injectable so CPU-only tests can run the
#: tier logic against an injected device.
Mover = Callable[[Sequence[torch.nn.Module], str], None]


def host_budget_bytes(config: Config, device: str) -> int:
    """Pinned host memory for parked models: on CUDA "auto" is a quarter of the RAM (at most
    32 GiB); on the CPU parking saves nothing (the weights are in RAM already)."""
    setting = config.host_memory_budget_mb
    if setting != "auto":
        return int(float(setting) * MB)
    if not device.startswith("cuda"):
        return 0
    return int(min(psutil.virtual_memory().total / 4, 32 * 1024 * MB))


def move_modules(modules: Sequence[torch.nn.Module], device: str) -> None:
    """`device` "cpu": to pinned host memory; else to that device (asynchronous copies from
    pinned memory, then one synchronize)."""
    for module in modules:
        if device == "cpu":
            module.to("cpu")
            if torch.cuda.is_available():
                for tensor in [*module.parameters(), *module.buffers()]:
                    tensor.data = tensor.data.pin_memory()
        else:
            module.to(device, non_blocking=True)
    if device != "cpu" and device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


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
        return 0 < nbytes <= self.budget_bytes and bool(adapter.torch_modules())

    def park(
        self, name: str, adapter: ModelAdapter, nbytes: int, probe: MemoryProbe
    ) -> tuple[bool, list[ModelAdapter]]:
        """Move `adapter` to the host (loader thread). Returns whether it parked, and the
        adapters pushed out to make room (the caller unloads them to disk)."""
        before = probe.allocated_bytes()
        self.mover(adapter.torch_modules(), "cpu")
        probe.release_cache()
        if probe.device.startswith("cuda") and before - probe.allocated_bytes() < 0.9 * nbytes:
            return False, []  # tensors outside its modules stayed on the device: unload it
        pushed: list[ModelAdapter] = []
        with self._lock:
            while self._parked and self._used_locked() + nbytes > self.budget_bytes:
                _, (oldest, _) = self._parked.popitem(last=False)
                pushed.append(oldest)
            self._parked[name] = (adapter, nbytes)
        return True, pushed

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
