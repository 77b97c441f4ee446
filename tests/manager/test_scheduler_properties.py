"""Property tests of the scheduler (issue #10): hypothesis draws a budget, a few models (some
estimated far too low or too high, some failing to load, some unloaded after each request,
some pinned) and up to 25 concurrent actors, each a short script of leases, plans, loads,
unloads, session claims that grow while a lease is held, sleepable engine claims, clock jumps
with `reap_expired`, and cancellations mid-wait. They all run at once on the CPU (`SizedModel`
through an injected factory, an injected keep-alive clock; holds are counted in event-loop
ticks, not wall time) and these must hold:

- the ledger is never over the budget, at any change (a watched ledger) or any tick (a
  monitor), nor at its peak; no `LedgerOverflow` is ever raised, anywhere;
- every actor ends, within a generous liveness guard (a deadlock shows as the guard firing),
  with only the documented errors: ServiceBusy, BudgetExceeded, ModelInUse, ModelLoadFailed,
  QueueFull, and CancelledError for the actors that were cancelled;
- at the end no lease, queued request or non-model claim is left, the model claims are exactly
  the LOADED models, each at its measured size, and the live tensor bytes are theirs;
- the real tensor bytes never exceed the budget by more than the one model being loaded: a
  load's memory exists before it is measured, so a model estimated too low is over its claim
  until it is measured (and its claim grown, or it is unloaded again). Loads run one at a time,
  so at every allocation the memory already there must fit the budget.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.manager.sized import (
    Clock,
    LiveTensors,
    SizedModel,
    TrackedModel,
    lease_once,
    make_manager,
    model,
)
from tests.waiting import until
from zooserve.catalog import ModelSpec
from zooserve.core.errors import BudgetExceeded, ModelInUse, ModelLoadFailed, QueueFull, ServiceBusy
from zooserve.manager import Claim, Ledger, ModelManager, Reclaim, Status
from zooserve.manager.claims import LedgerOverflow
from zooserve.runtimes.memory import MB

ALLOWED = (ServiceBusy, BudgetExceeded, ModelInUse, ModelLoadFailed, QueueFull)
#: Liveness guard, not a timing check: every request ends (admitted or refused) long before.
GUARD_S = 30.0
ADMISSION_TIMEOUT_S = 0.15


# --- what is watched -----------------------------------------------------------------------------


@dataclass
class Watch:
    """Everything seen going wrong during one program (checked at its end)."""

    budget: int
    problems: list[str] = field(default_factory=list)
    overflows: list[str] = field(default_factory=list)
    observations: int = 0

    def observe(self, ledger: Ledger, when: str) -> None:
        self.observations += 1
        used = ledger.used_bytes()
        if used > self.budget:
            self.problems.append(f"{when}: ledger at {used} of {self.budget} bytes")


class WatchedLedger(Ledger):
    """A Ledger that reports every refused change and checks the total after every change."""

    def __init__(self, budget_bytes: int, watch: Watch) -> None:
        super().__init__(budget_bytes)
        self.watch = watch

    def _check(self, growth: int, key: str) -> None:
        try:
            super()._check(growth, key)
        except LedgerOverflow as exc:
            self.watch.overflows.append(str(exc))
            raise

    def put(self, claim: Claim) -> Claim:
        put = super().put(claim)
        self.watch.observe(self, f"put {claim.key}")
        return put

    def resize(self, key: str, nbytes: int) -> None:
        super().resize(key, nbytes)
        self.watch.observe(self, f"resize {key}")

    def drop(self, key: str) -> Claim | None:
        dropped = super().drop(key)
        self.watch.observe(self, f"drop {key}")
        return dropped


# --- programs ------------------------------------------------------------------------------------

NAMES = ["m0", "m1", "m2", "m3", "m4"]
QUARTERS = st.integers(1, 16).map(lambda q: q * MB // 4)  # 0.25 .. 4 MB
TICKS = st.integers(0, 30)


@st.composite
def model_specs(draw: st.DrawFn, name: str) -> dict[str, Any]:
    real = draw(st.sampled_from([0.5, 1, 1.5, 2, 3, 5, 8]))
    estimate = draw(st.sampled_from(["honest", "honest", "low", "high"]))
    vram_mb = {"honest": real, "low": real / 4, "high": real * 3}[estimate]
    keep_alive = draw(st.sampled_from([0, "30s", "30s", "30s", -1]))
    fails = draw(st.integers(0, 5)) == 0
    return model(real, vram_mb=vram_mb, keep_alive=keep_alive, options={"fail": fails})


def steps(names: list[str]) -> st.SearchStrategy[tuple[Any, ...]]:
    one = st.sampled_from(names)
    two = st.lists(one, min_size=2, max_size=2, unique=True) if len(names) > 1 else st.just([])
    return st.one_of(
        st.tuples(st.just("use"), one, TICKS),
        st.tuples(st.just("use_all"), two, TICKS),
        st.tuples(st.just("load"), one),
        st.tuples(st.just("unload"), one),
        st.tuples(st.just("session"), one, QUARTERS, QUARTERS, TICKS, st.booleans()),
        st.tuples(st.just("session"), st.none(), QUARTERS, QUARTERS, TICKS, st.booleans()),
        st.tuples(
            st.just("engine"),
            QUARTERS,
            st.integers(0, 2).map(lambda q: q * MB // 8),  # floor: 0 .. 0.25 MB
            TICKS,
            st.lists(st.tuples(TICKS, TICKS), min_size=1, max_size=3),
        ),
        st.tuples(st.just("reap"), st.sampled_from([0, 10, 31, 120])),
        st.tuples(st.just("ticks"), TICKS),
    )


@dataclass
class Program:
    budget_mb: int
    models: dict[str, dict[str, Any]]
    max_pending: int
    max_wait_s: float
    actors: list[list[tuple[Any, ...]]]
    cancels: list[tuple[int, int]]  # (actor, after ticks)


@st.composite
def programs(draw: st.DrawFn) -> Program:
    names = NAMES[: draw(st.integers(1, len(NAMES)))]
    models = {name: draw(model_specs(name)) for name in names}
    count = draw(st.integers(1, 25))  # drawn as a number: lists' sizes favour short ones
    script = st.integers(1, 4).flatmap(lambda n: st.lists(steps(names), min_size=n, max_size=n))
    actors = draw(st.lists(script, min_size=count, max_size=count))
    cancels = draw(
        st.lists(st.tuples(st.integers(0, len(actors) - 1), st.integers(0, 60)), max_size=4)
    )
    return Program(
        budget_mb=draw(st.integers(3, 14)),
        models=models,
        max_pending=draw(st.sampled_from([2, 8, 64])),
        max_wait_s=draw(st.sampled_from([0.0, 0.02])),
        actors=actors,
        cancels=cancels,
    )


# --- the actors' steps ---------------------------------------------------------------------------


async def ticks(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def use(manager: ModelManager, name: str, hold: int) -> None:
    async with manager.use(name) as adapter:
        assert manager.state(name).status is Status.LOADED and adapter is not None
        await ticks(hold)


async def use_all(manager: ModelManager, names: list[str], hold: int) -> None:
    if not names:
        return
    async with manager.use_all(names) as adapters:
        assert set(adapters) == set(names)
        assert all(manager.state(n).status is Status.LOADED for n in names)
        await ticks(hold)


async def session(
    manager: ModelManager,
    key: str,
    name: str | None,
    first: int,
    second: int,
    hold: int,
    release_inside: bool,
) -> None:
    """A tracking session: lease its detector, reserve its memory bank, grow it while the
    lease is held (`holds=`), give it back inside or after the lease."""
    holds = [name] if name else []
    try:
        async with manager.use_all(holds):
            await manager.reserve(key, first, "session", holds=holds)
            await ticks(hold)
            await manager.reserve(key, second, "session grew", holds=holds)
            await ticks(hold)
            if release_inside:
                manager.release(key)
    finally:
        manager.release(key)


async def engine(
    manager: ModelManager,
    key: str,
    nbytes: int,
    floor: int,
    sleep_ticks: int,
    rounds: list[tuple[int, int]],
) -> None:
    """An external engine with a sleep API: idle between requests, it may be slept (its
    claim shrinks to `floor`); a request wakes it (its claim grows back through the
    scheduler)."""
    engine_state = {"busy": False, "sleeping": False, "asleep": False, "stopped": False}

    async def sleeper() -> None:
        engine_state["sleeping"] = True
        try:
            await ticks(sleep_ticks)
            if not engine_state["stopped"]:
                await manager.reserve(key, floor, "engine asleep", reclaim=Reclaim.NEVER)
                engine_state["asleep"] = True
        finally:
            engine_state["sleeping"] = False

    def awake_claim() -> Awaitable[None]:
        return manager.reserve(
            key,
            nbytes,
            "engine awake",
            reclaim=Reclaim.SLEEP,
            sleeper=sleeper,
            busy=lambda: engine_state["busy"],
            floor=floor,
        )

    try:
        await awake_claim()
        for busy_ticks, idle_ticks in rounds:
            while engine_state["sleeping"]:
                await ticks(1)
            engine_state["busy"] = True
            if engine_state["asleep"]:
                await awake_claim()
                engine_state["asleep"] = False
            await ticks(busy_ticks)
            engine_state["busy"] = False
            await ticks(idle_ticks)
    finally:
        engine_state["stopped"] = True
        manager.release(key)


async def perform(manager: ModelManager, clock: Clock, key: str, verb: str, *args: Any) -> None:
    if verb == "use":
        await use(manager, *args)
    elif verb == "use_all":
        await use_all(manager, *args)
    elif verb == "load":
        await manager.load(*args)
    elif verb == "unload":
        await manager.unload(*args)
    elif verb == "session":
        await session(manager, f"tracking:{key}", *args)
    elif verb == "engine":
        await engine(manager, f"engine:{key}", *args)
    elif verb == "reap":
        clock.now += args[0]
        await manager.reap_expired()
    else:
        await ticks(*args)


async def run_actor(
    manager: ModelManager, clock: Clock, index: int, script: list[tuple[Any, ...]]
) -> list[Exception]:
    """Run the steps in order; a step's error is kept and the next step runs."""
    errors: list[Exception] = []
    for number, (verb, *args) in enumerate(script):
        try:
            await perform(manager, clock, f"{index}.{number}", verb, *args)
        except Exception as exc:
            errors.append(exc)
    return errors


# --- one program ---------------------------------------------------------------------------------


def describe(manager: ModelManager) -> str:
    states = {n: (s.status.value, s.refcount) for n, s in manager.states.items()}
    claims = {c.key: (c.nbytes, c.reclaim.value, c.reclaiming) for c in manager.ledger}
    queue = [(t.label, t.urgent) for t in manager.scheduler.queue]
    return f"states={states} claims={claims} queue={queue}"


async def quiesce(manager: ModelManager) -> None:
    """Wait for the loads, unloads and sleeps that outlive their callers to end."""
    while manager.background.tasks:
        await manager.background.settle()
    await ticks(5)


def settled_bytes(live: LiveTensors, expected: int) -> None:
    """Collect garbage only when the count is off (a full collection costs ~0.2 s here):
    a traceback kept by an error may hold a dead adapter's frame until then."""
    if live.bytes != expected:
        gc.collect()


async def run_program(program: Program, weights: Path) -> None:
    clock = Clock()
    watch = Watch(0)

    def watched(budget: int) -> Ledger:
        watch.budget = budget
        return WatchedLedger(budget, watch)

    manager = make_manager(
        weights,
        program.budget_mb,
        {name: dict(spec) for name, spec in program.models.items()},
        clock=clock,
        timeout=ADMISSION_TIMEOUT_S,
        new_ledger=watched,
    )
    budget = manager.budget_bytes
    manager.scheduler.max_pending = program.max_pending
    manager.scheduler.max_wait_s = program.max_wait_s
    live = LiveTensors(budget)

    def build(spec: ModelSpec, source: str, device: str) -> TrackedModel:
        adapter = TrackedModel(spec, source, device)
        adapter.live = live
        return adapter

    manager.loader.adapter_factory = build
    loop_errors: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _, context: loop_errors.append(str(context.get("exception", context["message"])))
    )

    stop = False

    async def monitor() -> None:
        while not stop:
            watch.observe(manager.ledger, "tick")
            await asyncio.sleep(0)

    watching = asyncio.create_task(monitor())
    actors = [
        asyncio.create_task(run_actor(manager, clock, i, script))
        for i, script in enumerate(program.actors)
    ]

    async def cancel(index: int, after: int) -> None:
        await ticks(after)
        actors[index].cancel()

    cancellers = [asyncio.create_task(cancel(i, after)) for i, after in program.cancels]
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*actors, *cancellers, return_exceptions=True), GUARD_S
        )
        await asyncio.wait_for(quiesce(manager), GUARD_S)
    except TimeoutError:
        pytest.fail(f"deadlock: not every request ended within {GUARD_S} s; {describe(manager)}")
    finally:
        stop = True
        await watching

    cancelled = {i for i, _ in program.cancels}
    for i, outcome in enumerate(outcomes[: len(actors)]):
        if isinstance(outcome, asyncio.CancelledError):
            assert i in cancelled, f"actor {i} was cancelled by nobody"
            continue
        assert isinstance(outcome, list), f"actor {i} raised {outcome!r}"
        for error in outcome:
            assert isinstance(error, ALLOWED), f"actor {i}: {type(error).__name__}: {error}"

    assert not watch.overflows, watch.overflows
    assert not watch.problems, watch.problems[:5]
    assert watch.observations > 0
    assert manager.ledger.peak_used_bytes <= budget

    # The end state: nothing held, nothing queued, the ledger is exactly the loaded models.
    state_text = describe(manager)
    assert all(s.refcount == 0 for s in manager.states.values()), state_text
    assert manager.scheduler.pending == 0, state_text
    assert manager.reservations == {}, state_text
    loaded = {s.key: s for s in manager.states.values() if s.status is Status.LOADED}
    assert {c.key for c in manager.ledger} == set(loaded), state_text
    for key, state in loaded.items():
        assert state.footprint is not None
        claim = manager.ledger.get(key)
        assert claim is not None and not claim.reclaiming
        assert claim.nbytes == max(state.footprint.bytes, state.footprint.peak_bytes), key
    measured = sum(s.footprint.bytes for s in loaded.values() if s.footprint)
    assert manager.ledger.used_bytes() == measured, state_text
    settled_bytes(live, measured)
    assert live.bytes == measured, f"live tensors {live.bytes} B, loaded {measured} B"

    await manager.close()
    settled_bytes(live, 0)
    assert live.bytes == 0, f"{live.bytes} B of model tensors outlived the manager"
    assert not loop_errors, loop_errors
    assert not live.problems, live.problems[:5]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weights")


# Reproducible (derandomized, no example database). No shrinking: a program runs for about
# half a second, so shrinking a failure takes minutes; the failing program is printed as
# drawn, and is best minimised by hand into a plain test (as the ones below).
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(program=programs())
def test_random_interleavings_keep_the_budget_and_end(weights: Path, program: Program) -> None:
    asyncio.run(run_program(program, weights))


# --- reproductions of what the programs found ---------------------------------------------------


async def test_a_load_does_not_start_while_a_model_measured_too_big_is_still_resident(
    tmp_path: Path,
) -> None:
    """ "big" is estimated at 1 MB but holds 5 MB (budget 3 MB); "a" (1 MB, honest) is admitted
    beside it and its load queues on the loader thread behind big's. big measures 5 MB, can
    never fit, and is unloaded again, but that unload queues behind a's load: a's 1 MB is
    allocated while big's 5 MB are still there, 3 MB over the budget (on a GPU: an OOM in
    another model's load). A model measured above its claim must be settled (claim grown,
    or unloaded) before the next load starts."""
    manager = make_manager(
        tmp_path, 3, {"big": model(5, vram_mb=1), "a": model(1)}, timeout=ADMISSION_TIMEOUT_S
    )
    live = LiveTensors(manager.budget_bytes)

    def build(spec: ModelSpec, source: str, device: str) -> TrackedModel:
        adapter = TrackedModel(spec, source, device)
        adapter.live = live
        return adapter

    manager.loader.adapter_factory = build
    SizedModel.gate = threading.Event()  # holds big's load on the loader thread
    try:
        first = asyncio.create_task(lease_once(manager, "big"))
        await until(lambda: SizedModel.loads == ["big"], "big on the loader thread")
        second = asyncio.create_task(lease_once(manager, "a"))
        await until(lambda: manager.state("a").status is Status.LOADING, "a admitted")
        await ticks(10)  # a's load is queued on the loader thread, behind big's
        SizedModel.gate.set()
        outcomes = await asyncio.wait_for(
            asyncio.gather(first, second, return_exceptions=True), GUARD_S
        )
    finally:
        SizedModel.gate = None
    assert isinstance(outcomes[0], BudgetExceeded | ServiceBusy) and outcomes[1] is None
    assert manager.ledger.peak_used_bytes <= manager.budget_bytes  # the ledger never knew
    await manager.close()
    assert not live.problems, live.problems


async def test_a_plan_whose_second_model_fails_while_the_first_settles_raises_the_failure(
    tmp_path: Path,
) -> None:
    """A plan of "x" (estimated 1 MB, holds 3 MB) and "bad" (its load fails). x measures
    above its claim and grows by evicting the idle "z", whose unload queues on the loader
    thread behind bad's load: bad fails while the request still waits for x. The request
    must get bad's ModelLoadFailed, not a plan with a model that is not loaded."""
    manager = make_manager(
        tmp_path,
        4,
        {"z": model(1), "x": model(3, vram_mb=1), "bad": model(1, options={"fail": True})},
        timeout=ADMISSION_TIMEOUT_S,
    )
    await lease_once(manager, "z")  # loaded and idle: room x can grow into
    SizedModel.gate = threading.Event()  # holds x's load until bad's is queued behind it
    try:

        async def plan() -> None:
            async with manager.use_all(["x", "bad"]):
                pass

        request = asyncio.create_task(plan())
        await until(lambda: SizedModel.loads[-1:] == ["x"], "x on the loader thread")
        await until(lambda: manager.state("bad").status is Status.LOADING, "bad admitted")
        await ticks(10)  # bad's load is queued behind x's
        SizedModel.gate.set()
        outcome = (await asyncio.gather(request, return_exceptions=True))[0]
    finally:
        SizedModel.gate = None
    assert isinstance(outcome, ModelLoadFailed), repr(outcome)
    assert all(s.refcount == 0 for s in manager.states.values())
    await manager.close()
