"""The inference pool's deadline: a stuck call costs its caller a 503, not the service, and
the model it uses stays leased until its thread really ends."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.manager.sized import SizedModel, make_manager, model
from tests.waiting import until
from zooserve.core.errors import InferenceFailed, InvalidInput
from zooserve.runtimes.inference import InferencePool
from zooserve.runtimes.quiet import QuietWindow


async def test_a_stuck_call_is_abandoned_and_the_next_call_runs() -> None:
    pool = InferencePool(workers=1, timeout_s=0.2)
    release = threading.Event()
    with pytest.raises(InferenceFailed) as failed:
        await pool.run(release.wait, 30)
    assert failed.value.status == 503 and "inference_timeout_s" in failed.value.message
    # One worker, still stuck: without replacing the lane this call would wait behind it.
    assert await asyncio.wait_for(pool.run(sum, [1, 2, 3]), timeout=20) == 6
    assert pool.replaced == 1
    release.set()
    pool.shutdown()


async def test_a_crash_is_a_503_naming_the_error_and_domain_errors_pass() -> None:
    pool = InferencePool(workers=1, timeout_s=30)

    def crash() -> None:
        raise ValueError("shape mismatch (1, 1, 3)")

    def refuse() -> None:
        raise InvalidInput("bad frame")

    with pytest.raises(InferenceFailed, match="ValueError: shape mismatch"):
        await pool.run(crash)
    with pytest.raises(InvalidInput):
        await pool.run(refuse)
    pool.shutdown()


async def test_a_stuck_model_stays_leased_until_its_thread_ends(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, 10, {"a": model(1)})
    manager.lanes.pool.timeout_s = 0.2
    release = threading.Event()

    def stuck(batch: object) -> object:
        release.wait(30)
        return batch

    async with manager.use("a") as adapter:
        assert isinstance(adapter, SizedModel)
        adapter.forward = stuck  # type: ignore[method-assign]
        with pytest.raises(InferenceFailed):
            await manager.infer(adapter.detect, [np.zeros((4, 4, 3), np.uint8)], None, 0.5)
    # The request's lease ended, but the thread still runs in the model: it must not go.
    assert manager.state("a").refcount == 1
    release.set()
    for _ in range(200):
        if manager.state("a").refcount == 0:
            break
        await asyncio.sleep(0.01)
    assert manager.state("a").refcount == 0
    await manager.close()


async def test_a_quiet_window_holds_new_calls_until_it_closes() -> None:
    """The loader's quiet window (a memory measurement) holds calls before they start; the
    window stays calm and the held call then runs, not abandoned as stuck."""
    pool = InferencePool(workers=1, timeout_s=30)
    opened, close = threading.Event(), threading.Event()
    windows: list[QuietWindow] = []

    def loader() -> None:
        with pool.quiet(5) as window:
            windows.append(window)
            opened.set()
            close.wait(30)

    loading = asyncio.create_task(asyncio.to_thread(loader))
    assert await asyncio.to_thread(opened.wait, 30) and windows[0].calm
    call = asyncio.create_task(pool.run(sum, [1, 2]))
    await until(lambda: pool.held == 1, "the call waits at the gate")
    for _ in range(20):
        await asyncio.sleep(0)
    assert not call.done()
    close.set()
    await loading
    assert await call == 3 and pool.replaced == 0 and pool.held == 0
    assert windows[0].calm
    pool.shutdown()


async def test_a_call_cancelled_at_the_gate_never_runs() -> None:
    pool = InferencePool(workers=1, timeout_s=30)
    ran: list[int] = []
    with pool.quiet(1) as window:  # nothing runs: opens at once, even on the event loop
        assert window.calm
        call = asyncio.create_task(pool.run(ran.append, 1))
        await until(lambda: pool.held == 1, "the call waits at the gate")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert pool.held == 0
    await pool.run(ran.append, 2)
    assert ran == [2]
    pool.shutdown()
