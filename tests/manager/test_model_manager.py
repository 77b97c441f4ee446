"""The scheduler: single-flight, one load at a time, admission by bytes, eviction, unload
verification, failed loads, keep-alive. These run on the CPU with small real torch modules
(`SizedModel`: its tensor bytes are what the manager measures) built through an injected
adapter factory, and an injected clock, so no test sleeps for keep-alive."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.manager.sized import Clock, SizedModel, lease_once, make_manager, model
from tests.waiting import until
from zooserve.core.errors import (
    BudgetExceeded,
    ModelInUse,
    ModelLoadFailed,
    ModelNotFound,
    ServiceBusy,
)
from zooserve.manager import Status
from zooserve.runtimes.memory import MB


async def test_nothing_loads_until_first_use(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 10, {"a": model(1)})
    await manager.start()
    assert manager.loaded_models() == [] and SizedModel.loads == []
    async with manager.use("a") as adapter:
        assert manager.model_info("a")["status"] == "loaded"
        assert adapter.memory_bytes() == pytest.approx(1 * MB, rel=0.01)
    info = manager.model_info("a")
    assert info["load_count"] == 1 and info["memory_mb_measured"] == pytest.approx(1, rel=0.01)
    await manager.close()


async def test_concurrent_first_uses_share_one_load(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 10, {"a": model(1)})
    SizedModel.gate = threading.Event()
    try:

        async def call() -> int:
            async with manager.use("a") as adapter:
                return id(adapter)

        tasks = [asyncio.create_task(call()) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert manager.model_info("a")["status"] == "loading"
        SizedModel.gate.set()
        ids = await asyncio.gather(*tasks)
    finally:
        SizedModel.gate = None
    assert SizedModel.loads == ["a"] and len(set(ids)) == 1
    assert manager.events.count("load", "a") == 1
    await manager.close()


async def test_a_caller_that_goes_away_does_not_abandon_the_load(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 10, {"a": model(1)})
    SizedModel.gate = threading.Event()
    try:

        async def call() -> None:
            async with manager.use("a"):
                pass

        caller = asyncio.create_task(call())
        await asyncio.sleep(0.05)
        caller.cancel()  # e.g. the HTTP client disconnected mid-load
        await asyncio.gather(caller, return_exceptions=True)
        SizedModel.gate.set()
        await manager.load("a")  # joins the running load instead of starting another
    finally:
        SizedModel.gate = None
    assert SizedModel.loads == ["a"]
    state = manager.state("a")
    assert (state.status, state.refcount) == (Status.LOADED, 0)
    await manager.close()


async def test_budget_for_one_model_evicts_the_idle_one(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 3, {"a": model(2), "b": model(2, vram_mb=2)})
    async with manager.use("a"):
        pass
    async with manager.use("b"):
        assert manager.loaded_models() == ["b"]
    evictions = [e for e in manager.events.recent() if e.kind == "evict"]
    assert [e.model for e in evictions] == ["a"]
    assert evictions[0].reason == "make room for b"
    assert evictions[0].details["verified"] and evictions[0].bytes == pytest.approx(
        2 * MB, rel=0.01
    )
    assert manager.used_bytes() <= manager.budget_bytes
    await manager.close()


async def test_estimate_too_low_is_corrected_after_measuring(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 3, {"a": model(2), "b": model(2, vram_mb=0.5)})
    async with manager.use("a"):
        pass
    async with manager.use("b"):
        assert manager.loaded_models() == ["b"]
    evicted = [e for e in manager.events.recent() if e.kind == "evict"]
    assert [(e.model, e.reason) for e in evicted] == [("a", "make room for b (measured)")]
    assert manager.ledger.peak_used_bytes <= manager.budget_bytes
    # The measured figure, not the estimate, admits the next load.
    assert manager.state("b").admission_bytes == pytest.approx(2 * MB, rel=0.01)
    await manager.close()


async def test_least_recently_used_goes_first_and_pins_stay(tmp_path: Path) -> None:
    clock = Clock()
    manager = make_manager(
        tmp_path,
        4.5,
        {"pin": model(1, keep_alive=-1), "old": model(1), "new": model(1), "big": model(2)},
        clock=clock,
    )
    await manager.start()  # preloads the pinned model
    assert manager.loaded_models() == ["pin"]
    for name in ("old", "new"):
        clock.now += 10
        async with manager.use(name):
            pass
    clock.now += 10
    async with manager.use("big"):
        assert sorted(manager.loaded_models()) == ["big", "new", "pin"]
    await manager.close()


async def test_too_big_for_the_budget_is_507_with_numbers(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 1, {"huge": model(2, vram_mb=2)})
    with pytest.raises(BudgetExceeded) as excinfo:
        async with manager.use("huge"):
            pass
    assert excinfo.value.status == 507
    assert excinfo.value.details["budget_bytes"] == 1 * MB
    assert excinfo.value.details["needed_bytes"] == 2 * MB
    assert manager.model_info("huge")["status"] == "unloaded"


async def test_busy_models_blocking_room_give_503_after_a_bounded_wait(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 3, {"a": model(2), "b": model(2, vram_mb=2)}, timeout=0.2)
    async with manager.use("a"):
        with pytest.raises(ServiceBusy) as excinfo:
            async with manager.use("b"):
                pass
    assert excinfo.value.status == 503 and excinfo.value.retry_after
    assert [b["claim"] for b in excinfo.value.details["busy"]] == ["model:a"]
    assert excinfo.value.details["needed_bytes"] == 2 * MB
    assert manager.model_info("b")["status"] == "unloaded"
    # Once "a" is idle, "b" gets in by evicting it.
    async with manager.use("b"):
        assert manager.loaded_models() == ["b"]
    await manager.close()


async def test_waiting_request_gets_in_when_the_busy_model_is_released(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 3, {"a": model(2), "b": model(2, vram_mb=2)}, timeout=5)
    release = asyncio.Event()

    async def hold_a() -> None:
        async with manager.use("a"):
            await release.wait()

    holder = asyncio.create_task(hold_a())
    await asyncio.sleep(0.05)
    waiter = asyncio.create_task(manager.load("b"))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    release.set()
    await holder
    assert (await waiter)["status"] == "loaded"
    assert manager.loaded_models() == ["b"]
    await manager.close()


async def test_failed_load_leaves_no_state_and_can_be_retried(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 10, {"bad": model(1, options={"fail": True})})

    async def call() -> None:
        async with manager.use("bad"):
            pass

    results = await asyncio.gather(*(call() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ModelLoadFailed) for r in results)
    assert "corrupt weights" in results[0].message
    state = manager.state("bad")
    assert (state.status, state.refcount, state.adapter) == (Status.UNLOADED, 0, None)
    assert list(manager.ledger) == [] and manager.scheduler.pending == 0
    assert manager.used_bytes() == 0
    assert manager.events.count("load_failed", "bad") == 1
    # Fix the weights: the next request loads.
    state.spec.options["fail"] = False
    async with manager.use("bad"):
        pass
    assert manager.model_info("bad")["load_count"] == 1
    await manager.close()


async def test_out_of_memory_during_load_evicts_idle_models_and_retries_once(
    tmp_path: Path,
) -> None:
    manager = make_manager(
        tmp_path, 10, {"a": model(1), "b": model(1), "c": model(1, options={"oom_once": True})}
    )
    for name in ("a", "b"):
        async with manager.use(name):
            pass
    async with manager.use("c"):
        assert manager.loaded_models() == ["c"]
    assert SizedModel.loads == ["a", "b", "c", "c"]
    evicted = [e for e in manager.events.recent() if e.kind == "evict"]
    assert {e.model for e in evicted} == {"a", "b"} and evicted[
        0
    ].reason == "make room for c (out of memory)"
    assert manager.events.count("load_failed", "c") == 1


async def test_unload_frees_memory_and_refuses_while_in_use(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 10, {"a": model(1)})
    async with manager.use("a"):
        with pytest.raises(ModelInUse):
            await manager.unload("a")
    result = await manager.unload("a")
    assert result["status"] == "unloaded" and result["verified"]
    assert result["leaked_modules"] == 0
    assert result["recovered_bytes"] == pytest.approx(1 * MB, rel=0.01)
    assert manager.model_info("a")["status"] == "unloaded" and manager.used_bytes() == 0
    assert (await manager.unload("a"))["status"] == "not_loaded"
    await manager.close()


async def test_leaked_reference_is_reported_as_unload_incomplete(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 10, {"a": model(1)})
    async with manager.use("a") as adapter:
        leaked = adapter.model  # a caller that keeps the weights alive
    result = await manager.unload("a")
    assert not result["verified"] and result["leaked_modules"] == 1
    assert manager.events.count("unload_incomplete", "a") == 1
    del leaked
    await manager.close()


async def test_keep_alive_expiry_unloads_idle_models(tmp_path: Path) -> None:
    clock = Clock()
    manager = make_manager(
        tmp_path,
        10,
        {"short": model(1, keep_alive="30s"), "long": model(1, keep_alive="1h")},
        clock=clock,
    )
    for name in ("short", "long"):
        async with manager.use(name):
            pass
    clock.now += 29
    assert await manager.reap_expired() == []
    clock.now += 2
    assert await manager.reap_expired() == ["short"]
    assert manager.loaded_models() == ["long"]
    assert manager.events.recent()[-1].reason == "keep_alive expired"
    await manager.close()


async def test_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 10, {"a": model(1)})
    with pytest.raises(ModelNotFound) as excinfo:
        async with manager.use("nope"):
            pass
    assert excinfo.value.details["available_models"] == ["a"]


async def test_reservations_count_against_the_budget_and_evict_idle_models(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 3, {"a": model(2), "b": model(2, vram_mb=2)})
    async with manager.use("a"):
        pass
    await manager.reserve("tracking:1", int(1.5 * MB), "memory bank of a tracking session")
    assert manager.loaded_models() == []  # "a" was idle: evicted for the session
    assert manager.used_bytes() == int(1.5 * MB)
    with pytest.raises(BudgetExceeded):  # more than the whole budget: refused at once
        await manager.reserve("tracking:2", 4 * MB, "larger than the budget")
    with pytest.raises(ServiceBusy):  # a session is waited for (its owner frees it), bounded
        await manager.reserve("tracking:2", 2 * MB, "too big beside the first")
    with pytest.raises(ServiceBusy):  # "b" (2 MB) cannot fit beside the 1.5 MB session
        async with manager.use("b"):
            pass
    manager.release("tracking:1")
    async with manager.use("b"):
        assert manager.used_bytes() == 2 * MB
    await manager.close()


async def test_wanted_models_are_the_leased_and_the_queued_ones(tmp_path: Path) -> None:
    """What a Ray replica reports as its models: those held by a lease or wanted by a queued
    plan; a loaded idle model is not wanted (it may be evicted)."""
    manager = make_manager(tmp_path, 3, {"a": model(2), "b": model(2), "c": model(1)}, timeout=5)
    assert manager.wanted_models() == set()
    async with manager.use("a"):
        waiting = asyncio.create_task(lease_once(manager, "b"))  # waits for a's lease to end
        await until(lambda: manager.scheduler.pending == 1, "b queued")
        assert manager.wanted_models() == {"a", "b"}
    await waiting
    assert manager.loaded_models() == ["b"] and manager.wanted_models() == set()
    await manager.close()
