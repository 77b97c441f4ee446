"""Swap scheduling by outstanding demand (issue #18 item 1), on a real manager over small
torch modules: an idle model no queued request wants goes at once, whatever the age cap; the
missing model most queued requests want loads first; requests missing the same model share
one eviction; one swap at a time."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.manager.sized import SizedModel, lease_once, make_manager, model
from tests.waiting import until
from zooserve.manager import ModelManager

#: Far longer than any test runs: a request that waited for this timer would time out first.
AGE_CAP_S = 600.0


def manager_for(tmp_path: Path, budget_mb: float, names: str, **settings: float) -> ModelManager:
    manager = make_manager(
        tmp_path, budget_mb, {n: model(2) for n in names}, timeout=10, settings=settings
    )
    manager.scheduler.max_wait_s = AGE_CAP_S
    return manager


async def hold(manager: ModelManager, name: str, release: asyncio.Event) -> None:
    """Lease `name` until `release` is set."""
    async with manager.use(name):
        await release.wait()


async def test_an_idle_model_no_queued_request_wants_is_swapped_at_once(tmp_path: Path) -> None:
    """The issue's cause: "a" was used after the request for "b" arrived, which made it "in
    demand" until the age cap fired, while nothing ran. Nothing queued wants it: it goes."""
    manager = manager_for(tmp_path, 3, "ab")
    release = asyncio.Event()
    holder = asyncio.create_task(hold(manager, "a", release))
    await until(lambda: manager.loaded_models() == ["a"], "a loaded and leased")
    waiter = asyncio.create_task(lease_once(manager, "b"))
    await until(lambda: manager.scheduler.pending == 1, "b queued behind the busy a")
    release.set()
    await holder
    await asyncio.wait_for(waiter, 5)  # not the age cap (600 s), nor the admission timeout
    assert manager.loaded_models() == ["b"]
    await manager.close()


async def test_the_missing_model_most_requests_want_loads_first(tmp_path: Path) -> None:
    manager = manager_for(tmp_path, 3, "abc")
    release = asyncio.Event()
    holder = asyncio.create_task(hold(manager, "a", release))
    await until(lambda: manager.loaded_models() == ["a"], "a loaded and leased")
    waiters = [asyncio.create_task(lease_once(manager, "b"))]  # first to arrive, alone
    waiters += [asyncio.create_task(lease_once(manager, "c")) for _ in range(3)]
    await until(lambda: manager.scheduler.pending == 4, "b and three c queued")
    release.set()
    await holder
    await asyncio.wait_for(asyncio.gather(*waiters), 10)
    assert SizedModel.loads == ["a", "c", "b"]  # arrival order would load b before c
    await manager.close()


async def test_requests_missing_the_same_model_share_one_eviction(tmp_path: Path) -> None:
    """Room for two; "a" and "b" idle; three requests for "c" need one of them out, not both."""
    manager = manager_for(tmp_path, 5, "abc")
    for name in "ab":
        await lease_once(manager, name)
    await asyncio.gather(*(lease_once(manager, "c") for _ in range(3)))
    evicted = [e.model for e in manager.events.recent() if e.kind == "evict"]
    assert len(evicted) == 1 and evicted[0] in "ab"  # GreedyDual picks which
    assert len(manager.loaded_models()) == 2 and "c" in manager.loaded_models()
    await manager.close()


async def test_one_swap_at_a_time_lets_the_first_change_what_goes_next(tmp_path: Path) -> None:
    """Room for two, "a" and "b" idle, requests for "c" then "d": while c's swap is under way
    d's waits rather than evicting the other idle model at once, so a request for that model
    arriving meanwhile is served from memory instead of loading it again."""
    manager = manager_for(tmp_path, 5, "abcd")
    for name in "ab":
        await lease_once(manager, name)
    SizedModel.gate = gate = threading.Event()  # holds c's load on the loader thread
    try:
        for_c = asyncio.create_task(lease_once(manager, "c"))
        await until(lambda: SizedModel.loads[-1:] == ["c"], "c on the loader thread")
        for_d = asyncio.create_task(lease_once(manager, "d"))
        await until(lambda: manager.scheduler.pending == 1, "d queued behind c's swap")
        kept = next(name for name in "ab" if name in manager.loaded_models())  # GreedyDual's
        await asyncio.wait_for(lease_once(manager, kept), 5)  # resident: served at once
        gate.set()
        await asyncio.wait_for(asyncio.gather(for_c, for_d), 10)
    finally:
        SizedModel.gate = None
    assert SizedModel.loads == ["a", "b", "c", "d"]  # nothing was loaded a second time
    await manager.close()


@pytest.mark.parametrize(
    ("settle_ms", "loads"),
    [
        pytest.param(50, ["b", "a", "c"], id="default: b is not loaded a second time"),
        pytest.param(0, ["b", "a", "c", "b"], id="swap_settle_ms 0: b goes and comes back"),
    ],
)
async def test_a_swap_waits_for_the_next_request_of_the_client_just_answered(
    tmp_path: Path, settle_ms: float, loads: list[str]
) -> None:
    """Room for two, "a" leased and "b" idle, a request for "c" queued. When a's request ends
    its client asks again at once, for b: a swap decided the moment a's lease ended would have
    evicted b (used longer ago) and loaded it again; waiting `swap_settle_ms` for that request
    (it arrives on the next turn of the loop) serves it from memory and evicts a instead.
    With the setting at 0 the first happens: the setting reaches the scheduler."""
    manager = manager_for(tmp_path, 5, "abc", swap_settle_ms=settle_ms)
    assert manager.scheduler.settle_s == settle_ms / 1000
    await lease_once(manager, "b")
    release = asyncio.Event()
    holder = asyncio.create_task(hold(manager, "a", release))
    await until(lambda: manager.loaded_models() == ["a", "b"], "a leased beside an idle b")
    for_c = asyncio.create_task(lease_once(manager, "c"))
    await until(lambda: manager.scheduler.pending == 1, "c queued: a is busy, b may go")
    release.set()
    await holder
    await asyncio.wait_for(asyncio.gather(lease_once(manager, "b"), for_c), 10)
    assert SizedModel.loads == loads
    await manager.close()


async def test_a_swap_evicts_what_recent_requests_asked_for_least(tmp_path: Path) -> None:
    """Room for two. "a" is the hot model (asked for five times), "b" was used last (once).
    A request for "c" while neither is wanted by a queued request evicts b: by recency alone
    (the ideal's LRU) a would go and its next request, the likeliest, would load it again.
    Both reloads are set to 1 s (these tiny modules load in milliseconds, which would let
    the outcome hinge on the clock between two leases)."""
    manager = manager_for(tmp_path, 5, "abc")
    for _ in range(5):
        await lease_once(manager, "a")
    await lease_once(manager, "b")
    for name in "ab":
        manager.states[name].last_load_seconds = 1.0
    await asyncio.wait_for(lease_once(manager, "c"), 10)
    evicted = [e.model for e in manager.events.recent() if e.kind == "evict"]
    assert evicted == ["b"]
    assert sorted(manager.loaded_models()) == ["a", "c"]
    await manager.close()
