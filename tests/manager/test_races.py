"""Review of the scheduler's races: each test pins down one interleaving of coroutines (a load
finishing while another waits for the load lock, an unload in flight when a request arrives,
a caller cancelled mid-eviction) that once broke an invariant: one load per first use, no
eviction under a waiting caller, honest `status`/`used_bytes`, never over budget. Same
`SizedModel` family and injected clock as test_model_manager.py (tests/manager/sized.py); a
threading gate holds a load or an unload on the loader thread so the interleaving is
deterministic, not timed."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.manager.sized import Clock, SizedModel, lease_once, make_manager, model
from tests.waiting import until
from zooserve.catalog import ModelSpec
from zooserve.core.errors import ModelInUse, ServiceBusy
from zooserve.core.events import Event, EventLog
from zooserve.families.base import ModelAdapter
from zooserve.manager import ModelManager, Status, lookup
from zooserve.runtimes.memory import MB, CpuProbe


class GatedUnload(SizedModel):
    """A `SizedModel` whose unload waits for `unload_gate` (a slow unload on the loader
    thread), so a test can act while the model is UNLOADING."""

    unload_gate: threading.Event | None = None

    def unload(self) -> None:
        if self.unload_gate is not None:
            self.unload_gate.wait(timeout=10)
        super().unload()


def gated_unloads(manager: ModelManager, gate: threading.Event) -> ModelManager:
    def build(spec: ModelSpec, source: str, device: str) -> GatedUnload:
        adapter = GatedUnload(spec, source, device)
        adapter.unload_gate = gate
        return adapter

    manager.loader.adapter_factory = build
    return manager


# --- loads -------------------------------------------------------------------------------------


async def test_a_fresh_load_is_not_evicted_before_its_first_caller_gets_it(
    tmp_path: Path,
) -> None:
    """ "a" finishes loading while a load of "b" waits for the load lock; the lock passes to
    "b" before a's caller resumes. "b" must wait for that caller, not evict "a" under it."""
    manager = make_manager(
        tmp_path, 3, {"a": model(2, vram_mb=2), "b": model(2, vram_mb=2)}, timeout=5
    )
    SizedModel.gate = threading.Event()
    try:
        first = asyncio.create_task(lease_once(manager, "a"))
        await until(lambda: SizedModel.loads == ["a"], "a on the loader thread")
        second = asyncio.create_task(lease_once(manager, "b"))
        await asyncio.sleep(0.01)
        SizedModel.gate.set()
        # A guard, not a timing check: before the fix "a" and "b" evicted each other forever.
        await asyncio.wait_for(asyncio.gather(first, second), timeout=20)
    finally:
        SizedModel.gate = None
    assert SizedModel.loads == ["a", "b"]  # "a" was not loaded, evicted, and loaded again
    assert manager.events.count("load", "a") == 1
    await manager.close()


async def test_a_load_queued_for_the_lock_does_not_hold_budget_against_the_one_admitted(
    tmp_path: Path,
) -> None:
    """Two cold models that each fit alone, asked for at once: the second is only queued, so
    the first must be admitted at once (not 503 "busy" with no busy model)."""
    manager = make_manager(
        tmp_path, 3, {"a": model(2, vram_mb=2), "b": model(2, vram_mb=2)}, timeout=5
    )
    await asyncio.gather(lease_once(manager, "a"), lease_once(manager, "b"))
    # Both were served, one load each (which reaches the queue first is the event loop's
    # choice: each is located off the loop first); the later one stays, within the budget.
    assert sorted(SizedModel.loads) == ["a", "b"]
    last = SizedModel.loads[-1]
    assert manager.loaded_models() == [last] and manager.used_bytes() <= manager.budget_bytes
    await manager.close()


async def test_used_bytes_counts_a_loading_model_once_admitted(tmp_path: Path) -> None:
    """While "a" loads, its admitted estimate is in the ledger; "b", admitted beside it (both
    fit) and queued on the loader, has its claim there too: room is claimed at admission."""
    manager = make_manager(
        tmp_path, 10, {"a": model(2, vram_mb=2), "b": model(3, vram_mb=3)}, timeout=5
    )
    SizedModel.gate = threading.Event()
    try:
        first = asyncio.create_task(lease_once(manager, "a"))
        await until(lambda: SizedModel.loads == ["a"], "a on the loader thread")
        second = asyncio.create_task(lease_once(manager, "b"))
        await asyncio.sleep(0.01)
        assert manager.state("b").status is Status.LOADING
        assert manager.used_bytes() == 5 * MB
        SizedModel.gate.set()
        await asyncio.gather(first, second)
    finally:
        SizedModel.gate = None
    await manager.close()


async def test_load_during_an_unload_loads_again(tmp_path: Path) -> None:
    """POST /models/load while an eviction of the model is in flight: it must not answer
    "loaded" for a model that the unload then leaves unloaded."""
    gate = threading.Event()
    manager = gated_unloads(make_manager(tmp_path, 10, {"a": model(1)}), gate)
    await lease_once(manager, "a")
    unloading = asyncio.create_task(manager.unload("a", reason="evicted"))
    await until(lambda: manager.state("a").status is Status.UNLOADING, "a unloading")
    loading = asyncio.create_task(manager.load("a"))
    await asyncio.sleep(0.01)
    gate.set()
    result = await loading
    await unloading
    assert result["status"] == "loaded"
    assert manager.state("a").status is Status.LOADED and SizedModel.loads == ["a", "a"]
    await manager.close()


async def test_unload_refuses_a_model_that_callers_are_waiting_for(tmp_path: Path) -> None:
    """An unload asked for while "a" loads, with a request waiting for "a": unloading it
    right after the load would pull it from under that request (which then loads it again)."""
    manager = make_manager(tmp_path, 10, {"a": model(1)})
    SizedModel.gate = threading.Event()
    try:
        loading = asyncio.create_task(manager.load("a"))
        await until(lambda: SizedModel.loads == ["a"], "a on the loader thread")
        unloading = asyncio.create_task(manager.unload("a"))
        await asyncio.sleep(0.01)
        user = asyncio.create_task(lease_once(manager, "a"))
        await asyncio.sleep(0.01)
        SizedModel.gate.set()
        outcomes = await asyncio.gather(loading, unloading, user, return_exceptions=True)
    finally:
        SizedModel.gate = None
    assert isinstance(outcomes[1], ModelInUse) and outcomes[2] is None
    assert SizedModel.loads == ["a"]
    await manager.close()


# --- reaper ------------------------------------------------------------------------------------


async def test_reaper_does_not_unload_a_model_used_while_it_unloaded_another(
    tmp_path: Path,
) -> None:
    clock = Clock()
    gate = threading.Event()
    manager = gated_unloads(
        make_manager(
            tmp_path,
            10,
            {"x": model(1, keep_alive="30s"), "y": model(1, keep_alive="30s")},
            clock=clock,
        ),
        gate,
    )
    await lease_once(manager, "x")
    await lease_once(manager, "y")
    clock.now += 60  # both expired
    reaping = asyncio.create_task(manager.reap_expired())
    await until(lambda: manager.state("x").status is Status.UNLOADING, "x unloading")
    await lease_once(manager, "y")  # "y" is used again: its keep-alive starts over
    gate.set()
    assert await reaping == ["x"]
    assert manager.loaded_models() == ["y"]
    await manager.close()


# --- cancellation ------------------------------------------------------------------------------


async def test_a_cancelled_eviction_still_finishes_and_is_reported(tmp_path: Path) -> None:
    """A reservation (a tracking stream) evicts "a"; the client goes away mid-eviction.
    "a" must not read as unloaded while its memory is still held, and the eviction is an
    event like any other."""
    gate = threading.Event()
    manager = gated_unloads(make_manager(tmp_path, 3, {"a": model(2)}), gate)
    await lease_once(manager, "a")
    reserving = asyncio.create_task(manager.reserve("tracking:1", 2 * MB, "session"))
    await until(lambda: manager.state("a").status is Status.UNLOADING, "a evicting")
    reserving.cancel()
    await asyncio.gather(reserving, return_exceptions=True)
    assert manager.state("a").status is Status.UNLOADING  # the loader thread still holds it
    assert manager.used_bytes() == pytest.approx(2 * MB, rel=0.01)
    gate.set()
    await until(lambda: manager.state("a").status is Status.UNLOADED, "a unloaded")
    evicted = [e for e in manager.events.recent() if e.kind == "evict"]
    assert [e.model for e in evicted] == ["a"] and evicted[0].details["verified"]
    await manager.close()


async def test_a_cancelled_regrowth_keeps_the_earlier_reservation(tmp_path: Path) -> None:
    """A session grows its reservation; the request is cancelled while idle models are
    evicted for it. The session still holds what it had reserved before."""
    gate = threading.Event()
    manager = gated_unloads(make_manager(tmp_path, 4, {"a": model(2)}), gate)
    await manager.reserve("tracking:1", 1 * MB, "session")
    await lease_once(manager, "a")
    growing = asyncio.create_task(manager.reserve("tracking:1", 3 * MB, "session grew"))
    await until(lambda: manager.state("a").status is Status.UNLOADING, "a evicting")
    growing.cancel()
    await asyncio.gather(growing, return_exceptions=True)
    gate.set()
    await until(lambda: manager.state("a").status is Status.UNLOADED, "a unloaded")
    assert manager.reservations == {"tracking:1": 1 * MB}
    await manager.close()


async def test_a_cancelled_request_holds_its_lease_until_its_inference_thread_ends(
    tmp_path: Path,
) -> None:
    """A job cancelled (or a client gone) mid-inference: the thread still runs forward on the
    model, so the lease must not end, and the model not be unloaded, before the thread does."""
    manager = make_manager(tmp_path, 10, {"a": model(1)})
    running, finish = threading.Event(), threading.Event()

    def forward(adapter: SizedModel) -> float:
        running.set()
        finish.wait(timeout=10)
        return float(adapter.model.weight.detach().sum())  # the weights must still be there

    async def request() -> float:
        async with manager.use("a") as adapter:
            assert isinstance(adapter, SizedModel)
            return await manager.infer(forward, adapter)

    task = asyncio.create_task(request())
    await until(running.is_set, "forward running")
    task.cancel()
    await asyncio.sleep(0.01)  # the cancellation reaches the request
    with pytest.raises(ModelInUse):
        await manager.unload("a")
    finish.set()
    assert isinstance(
        (await asyncio.gather(task, return_exceptions=True))[0], asyncio.CancelledError
    )
    assert manager.state("a").refcount == 0 and (await manager.unload("a"))["verified"]
    await manager.close()


# --- the budget --------------------------------------------------------------------------------


async def test_a_reservation_that_fits_does_not_queue_behind_a_load_waiting_for_room(
    tmp_path: Path,
) -> None:
    """A tracking request leases "a" and then reserves its session, which fits. A load of
    "b" waits in the queue for a's lease to end. The reservation must not wait behind it:
    the lease it would wait for is its own request's (a cycle broken only by a 503)."""
    manager = make_manager(tmp_path, 3, {"a": model(2), "b": model(2, vram_mb=2)}, timeout=30)
    async with manager.use("a"):
        loading_b = asyncio.create_task(lease_once(manager, "b"))
        await until(lambda: manager.scheduler.pending == 1, "b's load waiting for room")
        reserving = asyncio.create_task(manager.reserve("tracking:1", MB // 2, "session"))
        await until(lambda: "tracking:1" in manager.reservations, "the session reserved")
        assert manager.scheduler.pending == 1  # b still waits for room
        await reserving
        manager.release("tracking:1")
    await loading_b
    assert manager.loaded_models() == ["b"]
    await manager.close()


async def test_a_reclaim_commits_its_victims_so_the_ledger_never_goes_over(
    tmp_path: Path,
) -> None:
    """The reservation needs both "a" and "b" evicted: both are marked unloading at once, so
    a lease of "b" meanwhile waits for room instead of slipping in under the reservation."""
    clock = Clock()
    manager = make_manager(tmp_path, 3, {"a": model(1), "b": model(2)}, clock=clock, timeout=0.2)
    unloading = threading.Event()  # holds the unloads until "b" is asked for: no timing race
    gated_unloads(manager, unloading)
    await lease_once(manager, "a")
    clock.now += 1
    await lease_once(manager, "b")
    reserving = asyncio.create_task(manager.reserve("tracking:1", 2 * MB, "session"))
    await until(lambda: manager.state("a").status is not Status.LOADED, "a evicting")
    assert manager.state("b").status is Status.UNLOADING
    using_b = asyncio.create_task(lease_once(manager, "b"))
    await asyncio.sleep(0.01)
    unloading.set()
    await reserving
    assert manager.reservations == {"tracking:1": 2 * MB}
    with pytest.raises(ServiceBusy):  # "b" (2 MB) waits beside the session (2 MB), then 503
        await using_b
    assert manager.ledger.peak_used_bytes <= manager.budget_bytes
    await manager.close()


# --- unload verification -----------------------------------------------------------------------


class OutsideTorch(ModelAdapter):
    """Weights held outside torch (as ONNX Runtime and OpenCV families hold theirs)."""

    family, kind = "outside_torch", "quality"

    def load(self) -> None:
        self.weights = np.ones(int(self.spec.options["mb"] * MB), dtype=np.uint8)

    def memory_bytes(self) -> int:
        return int(self.weights.nbytes)


class CudaAllocatorView(CpuProbe):
    """The CUDA probe as torch's allocator sees an adapter without torch modules. Mocked:
    there is no GPU here. Its `measure_load` counts the adapter's own bytes (CudaProbe does
    that when an adapter has no torch modules); allocated bytes never move for such memory."""

    def __init__(self) -> None:
        super().__init__("cuda:0")

    def allocated_bytes(self) -> int:
        return 100 * MB  # other models' tensors; an ONNX/OpenCV model changes nothing here


async def test_a_model_outside_torch_unloads_verified_on_cuda(tmp_path: Path) -> None:
    """OpenCV/ONNX memory is invisible to torch's allocator: an unload must not be reported
    incomplete (a warning on every eviction of the shipped face detector) for that alone."""
    manager = make_manager(tmp_path, 10, {"ort": model(1)}, probe=CudaAllocatorView())
    manager.loader.adapter_factory = lambda spec, source, device: OutsideTorch(spec, source, device)
    await lease_once(manager, "ort")
    assert manager.model_info("ort")["memory_mb_measured"] == pytest.approx(1)
    result = await manager.unload("ort")
    assert result["verified"] and result["recovered_bytes"] == 1 * MB
    assert manager.events.count("unload_incomplete") == 0
    await manager.close()


def test_asking_for_no_recent_events_gives_none() -> None:
    log = EventLog()
    for name in ("a", "b"):
        log.record(Event("load", name, "first use"))
    assert log.recent(1)[0].model == "b"
    assert log.recent(0) == []


async def test_a_model_is_located_and_estimated_once_not_on_every_dispatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Admission runs on every change of state; reading weight files there would put disk
    I/O on the hot path. The estimate is taken once, when a request for the model arrives."""
    manager = make_manager(tmp_path, 3, {"a": model(2), "b": model(2)}, timeout=5)
    looked_up: list[str] = []
    estimate = lookup.estimate_bytes

    def counting(device: str, spec: ModelSpec, family: str, source: str) -> int:
        looked_up.append(spec.name)
        return estimate(device, spec, family, source)

    monkeypatch.setattr(lookup, "estimate_bytes", counting)
    async with manager.use("a"):
        waiting = asyncio.create_task(lease_once(manager, "b"))  # waits for a's lease
        await until(lambda: manager.scheduler.pending == 1, "b queued")
        for _ in range(20):  # leases of "a" coming and going: a dispatch pass each
            await lease_once(manager, "a")
        assert looked_up == ["a", "b"]
    await waiting
    await lease_once(manager, "b")  # loaded: nothing to look up
    assert looked_up == ["a", "b"]
    await manager.close()
