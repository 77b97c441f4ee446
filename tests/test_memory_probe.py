"""Measuring one model's memory on a device other models use at the same time.

There is no GPU here: every CUDA figure below comes from `FakeCudaProbe`, an injected fake
that reports what a CUDA allocator (and NVML) would while calls of other models run. The
inference pool and its quiet window are the real ones.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from tests.waiting import until
from zooserve.catalog import ModelSpec
from zooserve.families.base import ModelAdapter
from zooserve.runtimes.inference import InferencePool
from zooserve.runtimes.memory import (
    MB,
    CpuProbe,
    admission_bytes,
    load_measured,
    nvml_process_bytes,
)
from zooserve.runtimes.quiet import QuietWindow

OTHER_ACTIVATIONS = 300 * MB  # what another model's forward allocates while it runs
OTHER_CACHE = 500 * MB  # what torch's cache keeps (NVML sees it) once another model ran


class FakeCudaProbe(CpuProbe):
    """A CUDA device shared with other models' calls. Injected fake: no GPU here.

    `allocated` is torch's allocated figure. A call of another model that runs at any time
    since `reset_peak` lands its activations in `peak_bytes`, as a real forward's do; by the
    end of its first run it has also grown this process's NVML figure by torch's cache.
    """

    def __init__(self, nvml: Callable[[], int | None] | None = None) -> None:
        super().__init__("cuda:0")
        self.allocated = 1000 * MB  # other models' weights
        self.nvml_used = 2000 * MB  # the CUDA context, torch's cache, other sessions
        self.nvml = nvml or (lambda: self.nvml_used)
        self._lock = threading.Lock()
        self._peak = self.allocated
        self._others = 0  # other models' calls running now
        self._others_seen = False  # ...or at any time since reset_peak
        self._cache_grown = False

    def add(self, delta: int) -> None:
        with self._lock:
            self.allocated += delta
            self._peak = max(self._peak, self.allocated)

    @contextmanager
    def other_model_running(self) -> Iterator[None]:
        with self._lock:
            self._others += 1
            self._others_seen = True
        try:
            yield
        finally:
            with self._lock:
                self._others -= 1
                if not self._cache_grown:
                    self._cache_grown, self.nvml_used = True, self.nvml_used + OTHER_CACHE

    def allocated_bytes(self) -> int:
        return self.allocated

    def reset_peak(self) -> None:
        with self._lock:
            self._peak = self.allocated
            self._others_seen = self._others > 0

    def peak_bytes(self) -> int:
        with self._lock:
            return self._peak + (OTHER_ACTIVATIONS if self._others_seen else 0)

    def process_device_bytes(self) -> int | None:
        return self.nvml()


def spec() -> ModelSpec:
    return ModelSpec(name="m", model_id="m")


class TorchModel(ModelAdapter):
    """40 MB of weights on the (fake) device; its warm-up allocates 8 MB of activations."""

    family, kind = "fake_torch", "detection"

    def __init__(self, probe: FakeCudaProbe) -> None:
        super().__init__(spec(), "m", probe.device)
        self.probe = probe
        self.events: list[str] = []

    def load(self) -> None:
        self.module = torch.nn.Linear(1, 1)
        self.probe.add(40 * MB)

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.module]

    def memory_bytes(self) -> int:
        return 40 * MB  # its tensors as they would be on the device

    def warmup(self) -> None:
        self.events.append("warmup")
        self.probe.add(8 * MB)
        self.probe.add(-8 * MB)


class OrtModel(ModelAdapter):
    """An ONNX Runtime session: 100 MB of weights file; on the device the session takes
    120 MB at load and its arena grows by 30 MB in the warm-up, all invisible to torch."""

    family, kind = "fake_ort", "detection"

    def __init__(self, probe: FakeCudaProbe) -> None:
        super().__init__(spec(), "m", probe.device)
        self.probe = probe

    def load(self) -> None:
        self.session = object()
        self.probe.nvml_used += 120 * MB

    def memory_bytes(self) -> int:
        return 100 * MB

    def warmup(self) -> None:
        self.probe.nvml_used += 30 * MB


async def test_another_models_call_does_not_pollute_the_measure() -> None:
    """A call running when the load starts: the warm-up waits for it to end, and a call
    arriving meanwhile waits for the warm-up. Bytes are the model's own; the peak is its
    weights + its own activations (without the window, 300 MB of the other call's)."""
    probe = FakeCudaProbe()
    pool = InferencePool(workers=2, timeout_s=60, quiet_timeout_s=60)
    running, release = threading.Event(), threading.Event()
    adapter = TorchModel(probe)

    def other_model(tag: str) -> str:
        with probe.other_model_running():
            running.set()
            release.wait(30)
            adapter.events.append(tag)
            return tag

    first = asyncio.create_task(pool.run(other_model, "running call ended"))
    assert await asyncio.to_thread(running.wait, 30)
    loading = asyncio.create_task(asyncio.to_thread(load_measured, adapter, probe, pool.quiet))
    await until(lambda: pool.quiet_requested, "the load asks for quiet")
    assert adapter.events == []  # loaded, but the warm-up waits for the running call
    late = asyncio.create_task(pool.run(other_model, "late call"))
    await until(lambda: pool.held == 1, "the late call waits at the gate")
    release.set()
    footprint = await loading
    assert await first == "running call ended" and await late == "late call"
    assert adapter.events == ["running call ended", "warmup", "late call"]
    assert (footprint.bytes, footprint.peak_bytes) == (40 * MB, 48 * MB)
    assert footprint.method == "tensor_bytes"
    pool.shutdown()


async def test_without_a_quiet_window_the_peak_is_polluted_and_says_so() -> None:
    """The same scene with no window (the fake is sensitive to what the window prevents)."""
    probe = FakeCudaProbe()
    with probe.other_model_running():
        footprint = load_measured(TorchModel(probe), probe)
    assert footprint.bytes == 40 * MB  # the model's own tensors: no call changes them
    assert footprint.peak_bytes == 48 * MB + OTHER_ACTIVATIONS
    assert footprint.method == "tensor_bytes+noisy"


async def test_a_call_that_never_ends_does_not_hang_the_measure() -> None:
    """The wait for running calls is bounded; the figure is taken anyway and marked noisy,
    and the calls held meanwhile run once the window closes."""
    probe = FakeCudaProbe()
    pool = InferencePool(workers=2, timeout_s=60, quiet_timeout_s=0.2)
    running, release = threading.Event(), threading.Event()

    def endless() -> None:
        with probe.other_model_running():
            running.set()
            release.wait(60)

    stuck = asyncio.create_task(pool.run(endless))
    assert await asyncio.to_thread(running.wait, 30)
    adapter = TorchModel(probe)
    footprint = await asyncio.to_thread(load_measured, adapter, probe, pool.quiet)
    assert footprint.method == "tensor_bytes+noisy" and footprint.bytes == 40 * MB
    assert not pool.quiet_requested
    assert await asyncio.wait_for(pool.run(sum, [1, 2]), 30) == 3
    release.set()
    await stuck
    pool.shutdown()


async def test_a_call_abandoned_at_its_deadline_is_not_waited_for() -> None:
    """A call past `inference_timeout_s` may never end: the window does not wait for it (its
    full quiet timeout, here 10 minutes, on every load) but marks the measure noisy."""
    probe = FakeCudaProbe()
    pool = InferencePool(workers=1, timeout_s=0.2, quiet_timeout_s=600)
    release = threading.Event()
    with pytest.raises(Exception, match="inference_timeout_s"):
        await pool.run(release.wait, 60)
    footprint = await asyncio.wait_for(
        asyncio.to_thread(load_measured, TorchModel(probe), probe, pool.quiet), 60
    )
    assert footprint.method == "tensor_bytes+noisy"
    release.set()
    pool.shutdown()


class HungWarmup(TorchModel):
    """A warm-up stuck in native code (until the test lets it go)."""

    def __init__(self, probe: FakeCudaProbe) -> None:
        super().__init__(probe)
        self.release = threading.Event()

    def warmup(self) -> None:
        self.release.wait(60)


async def test_a_hung_warm_up_does_not_stop_inference() -> None:
    """Calls held by the window go on after the inference deadline, and the measure that
    their running makes unreliable says so."""
    probe = FakeCudaProbe()
    pool = InferencePool(workers=1, timeout_s=0.2)
    adapter = HungWarmup(probe)
    loading = asyncio.create_task(asyncio.to_thread(load_measured, adapter, probe, pool.quiet))
    await until(lambda: pool.quiet_requested, "the warm-up's window is open")
    assert await asyncio.wait_for(pool.run(sum, [1, 2]), 30) == 3
    adapter.release.set()
    footprint = await loading
    assert footprint.method == "tensor_bytes+noisy"
    pool.shutdown()


async def test_a_model_outside_torch_is_measured_by_this_process_nvml_delta() -> None:
    """No torch modules (ONNX Runtime): the NVML figure of this process over load + warm-up,
    read in a quiet window that also covers the load, so another model's call running then
    (whose torch cache grows the same NVML figure by 500 MB) is waited for first."""
    probe = FakeCudaProbe()
    pool = InferencePool(workers=1, timeout_s=60, quiet_timeout_s=60)
    running, release = threading.Event(), threading.Event()
    adapter = OrtModel(probe)

    def other_model() -> None:
        with probe.other_model_running():
            running.set()
            release.wait(30)

    call = asyncio.create_task(pool.run(other_model))
    assert await asyncio.to_thread(running.wait, 30)
    loading = asyncio.create_task(asyncio.to_thread(load_measured, adapter, probe, pool.quiet))
    await until(lambda: pool.quiet_requested, "the load asks for quiet")
    assert not hasattr(adapter, "session")  # the load itself waits for the running call
    release.set()
    footprint = await loading
    await call
    assert footprint.bytes == 150 * MB and footprint.method == "nvml_process_delta"
    assert footprint.peak_bytes == 150 * MB  # nothing through torch's allocator
    pool.shutdown()


@pytest.mark.parametrize(
    ("nvml", "expected_bytes", "method"),
    [
        (lambda: None, 100 * MB, "weight_bytes"),  # NVML unavailable: the adapter's own count
        (lambda: 7 * MB, 100 * MB, "nvml_process_delta"),  # no growth seen: never below weights
    ],
)
def test_a_model_outside_torch_falls_back_to_its_weight_bytes(
    nvml: Callable[[], int | None], expected_bytes: int, method: str
) -> None:
    probe = FakeCudaProbe(nvml)
    footprint = load_measured(OrtModel(probe), probe, quiet=quiet_device)
    assert (footprint.bytes, footprint.method) == (expected_bytes, method)


@contextmanager
def quiet_device() -> Iterator[QuietWindow]:
    yield QuietWindow()


class CpuModel(ModelAdapter):
    family, kind = "fake_cpu", "detection"

    def load(self) -> None:
        self.module = torch.nn.Linear(1000, 1, bias=False)  # 4000 bytes of float32

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.module]


def test_cpu_models_are_never_paused_for() -> None:
    """On the CPU the figure is the tensor bytes: no quiet window, whatever is passed."""

    def forbidden() -> Any:
        raise AssertionError("CPU inference paused")

    footprint = load_measured(CpuModel(spec(), "m", "cpu"), CpuProbe(), quiet=forbidden)
    assert (footprint.bytes, footprint.peak_bytes) == (4000, 4000)
    assert footprint.method == "tensor_bytes"


class FailingWarmup(TorchModel):
    def warmup(self) -> None:
        raise RuntimeError("CUDA error: an illegal memory access")


def test_a_failed_warm_up_unloads_and_reopens_the_gate() -> None:
    probe = FakeCudaProbe()
    pool = InferencePool(workers=1, timeout_s=60)
    adapter = FailingWarmup(probe)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        load_measured(adapter, probe, pool.quiet)
    assert adapter.module is None and not pool.quiet_requested
    pool.shutdown()


@pytest.mark.parametrize(
    ("estimate", "measured", "peak", "admit"),
    [
        (None, None, None, 0),
        (50 * MB, None, None, 50 * MB),  # never loaded: the estimate
        (50 * MB, 40 * MB, 48 * MB, 50 * MB),  # an estimate above the measure still counts
        (30 * MB, 40 * MB, 48 * MB, 48 * MB),  # the model must fit at its warm-up peak
        (None, 40 * MB, None, 40 * MB),
    ],
)
def test_admission_bytes_is_the_largest_known_figure(
    estimate: int | None, measured: int | None, peak: int | None, admit: int
) -> None:
    assert admission_bytes(estimate, measured, peak) == admit


def fake_pynvml(processes: list[tuple[int, int | None]], by_uuid: list[str]) -> Any:
    """pynvml listing `processes` as (pid, used bytes); injected: no driver here."""

    def handle_by_uuid(uuid: str) -> str:
        by_uuid.append(uuid)
        return uuid

    return types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByUUID=handle_by_uuid,
        nvmlDeviceGetHandleByIndex=lambda index: f"index-{index}",
        nvmlDeviceGetComputeRunningProcesses=lambda handle: [
            types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in processes
        ],
    )


def test_nvml_process_bytes_reads_this_process_on_the_gpu_torch_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fake pynvml module (no driver here). The GPU is looked up by torch's UUID, since
    torch's index is not NVML's under CUDA_VISIBLE_DEVICES; other processes do not count."""
    uuids: list[str] = []
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([(1, 9 * MB), (42, 5 * MB)], uuids))
    assert nvml_process_bytes(0, "58b1f5d5-aaaa", pid=42) == 5 * MB
    assert uuids == ["GPU-58b1f5d5-aaaa"]
    assert nvml_process_bytes(0, None, pid=7) is None  # not listed (another PID namespace)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([(42, None)], uuids))
    assert nvml_process_bytes(0, None, pid=42) is None  # no figure (MIG, WDDM)
    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace())
    assert nvml_process_bytes(0) is None  # no driver / no NVML
