"""Memory on a device other work shares: the "auto" budget on CUDA, unload verification while
other lanes allocate, what the process holds outside the ledger (CUDA context, allocator cache),
and NVML's figure where it lists no PID of ours (containers).

No GPU here: the CUDA figures come from `SharedDevice`, an injected fake probe that reports a
device whose free memory and allocator move as a real one's would with other work on it, and
from a fake `pynvml` module."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from tests.test_memory_probe import fake_pynvml
from zooserve.catalog import Config, ModelSpec
from zooserve.families.base import ModelAdapter
from zooserve.manager import ModelManager
from zooserve.runtimes.memory import (
    MB,
    CpuProbe,
    auto_budget_bytes,
    device_overhead,
    unload_verified,
)
from zooserve.runtimes.nvml import nvml_used_bytes

GB = 1024 * MB
LANE_BYTES = 300 * MB  # what another model's call allocates (or frees) meanwhile


class SharedDevice(CpuProbe):
    """An 80 GB CUDA device (injected fake: no GPU here). `lane` is what another lane does to
    the allocator's device-wide figure between two reads: +allocates, -frees."""

    def __init__(self, free: int = 79 * GB, lane: int = 0) -> None:
        super().__init__("cuda:0")
        self.free, self.lane, self.allocated = free, lane, 10 * GB

    def total_bytes(self) -> int:
        return 80 * GB

    def free_bytes(self) -> int:
        return self.free

    def allocated_bytes(self) -> int:
        self.allocated += self.lane
        return self.allocated


class Weights(ModelAdapter):
    """A 4 MB module; `keep` holds its weight elsewhere after unload (a hidden leak)."""

    family, kind = "fake_weights", "detection"
    kept: list[torch.Tensor] = []

    def __init__(self, keep: bool = False) -> None:
        super().__init__(ModelSpec(name="w", model_id="w"), "w", "cpu")
        self.module = torch.nn.Linear(1024, 1024, bias=False)
        if keep:
            Weights.kept.append(self.module.weight)

    def load(self) -> None:
        pass

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.module] if self.module is not None else []


def test_auto_budget_is_never_more_than_was_free_at_start_less_a_margin(tmp_path: Path) -> None:
    quiet = SharedDevice(free=79 * GB)
    assert auto_budget_bytes(quiet) == int(0.9 * 80 * GB)  # 72 GB: the 0.9 share binds
    shared = SharedDevice(free=30 * GB)  # another process holds 50 GB
    assert auto_budget_bytes(shared) == 29 * GB  # not 72 GB: free at start less 1 GB
    config = Config.model_validate({"device": "cpu", "models": {}, "base_dir": tmp_path})
    manager = ModelManager(config, probe=shared)
    assert manager.budget_bytes == 29 * GB
    assert auto_budget_bytes(CpuProbe()) == int(CpuProbe().total_bytes() * 0.5)


class WarmDevice(SharedDevice):
    """An injected CUDA probe (no GPU here) of a process that already holds 1.5 GB by NVML:
    its CUDA context (500 MB) and 1 GB torch reserved, of which 900 MB are live tensors."""

    def process_device_bytes(self) -> int | None:
        return 1536 * MB

    def reserved_bytes(self) -> int:
        return GB

    def allocated_bytes(self) -> int:
        return 900 * MB


def test_the_auto_budget_counts_the_cuda_context_and_the_allocator_cache() -> None:
    warm = WarmDevice()
    overhead = device_overhead(warm)
    assert (overhead.cuda_context_bytes, overhead.cached_free_bytes) == (512 * MB, 124 * MB)
    assert auto_budget_bytes(warm) == int(0.9 * 80 * GB) - 636 * MB  # before: 72 GB, all of it
    unknown = SharedDevice()  # NVML cannot say: the context is not guessed
    assert device_overhead(unknown).total_bytes == 0
    assert device_overhead(CpuProbe()).total_bytes == 0


def test_an_unload_is_verified_while_another_lane_allocates() -> None:
    adapter = Weights()
    expected = adapter.memory_bytes()
    outcome = unload_verified([adapter], expected, SharedDevice(lane=+LANE_BYTES))
    assert outcome.recovered_bytes == expected == 4 * MB
    assert outcome.verified  # not a false unload_incomplete


def test_a_leak_shows_even_while_another_lane_frees() -> None:
    adapter = Weights(keep=True)
    expected = adapter.memory_bytes()
    outcome = unload_verified([adapter], expected, SharedDevice(lane=-LANE_BYTES))
    assert outcome.recovered_bytes == 0 and not outcome.verified  # the weight is still held
    Weights.kept.clear()


def test_where_nvml_lists_no_pid_of_ours_the_device_wide_figure_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = fake_pynvml([(1, 9 * MB)], [])  # another process only: ours is in another namespace
    nvml.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(
        total=80 * GB, used=12 * GB, free=68 * GB
    )
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert nvml_used_bytes(0) == (12 * GB, "device")  # before: None, and no NVML delta at all
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([(1, 9 * MB)], []))
    monkeypatch.setattr("os.getpid", lambda: 1)
    assert nvml_used_bytes(0) == (9 * MB, "process")
