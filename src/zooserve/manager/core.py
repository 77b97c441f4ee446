"""ModelManager: the one owner of loaded models.

Lazy loads on first use through the scheduler (whole plans from a bounded queue, admission by
bytes against the budget, see scheduler.py), single-flight per model, one load at a time on
a dedicated loader thread, eviction of idle claims only, keep-alive timers per model, verified
unloads, and an event for everything. All state lives on the event loop thread, so it changes
only between awaits; blocking work runs on the loader thread or the inference pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psutil

from zooserve import request_context
from zooserve.batching import Batcher
from zooserve.catalog import Config, ModelSpec
from zooserve.errors import ConfigError, ModelInUse, ModelNotFound
from zooserve.events import Event, EventLog
from zooserve.families import adapter_class
from zooserve.families.base import ModelAdapter
from zooserve.inference import InferencePool
from zooserve.manager.admission import Admission
from zooserve.manager.claims import Ledger, Reclaim
from zooserve.manager.reporting import Reporting
from zooserve.manager.running import Running
from zooserve.manager.scheduler import Scheduler, Ticket
from zooserve.manager.state import ModelState, Status
from zooserve.manager.tiers import HostTier, Mover, move_modules
from zooserve.manager.transitions import AdapterFactory, Remeasured, Transitions
from zooserve.manager.unloading import Unloading
from zooserve.memory import MB, MemoryProbe, probe_for
from zooserve.runtimes.torch_runtime import resolve_device

T = TypeVar("T")
#: Times a request re-queues after its model measured above its admission.
REMEASURE_RETRIES = 2


def default_adapter_factory(spec: ModelSpec, source: str, device: str) -> ModelAdapter:
    if not spec.family:
        raise ConfigError(f"models.{spec.name}.family is not set and could not be inferred")
    return adapter_class(spec.family)(spec, source, device)


class ModelManager(Admission, Transitions, Unloading, Running, Reporting):
    """Owns every loaded model. Use `async with manager.use(name) as adapter:`."""

    def __init__(
        self,
        config: Config,
        *,
        probe: MemoryProbe | None = None,
        adapter_factory: AdapterFactory = default_adapter_factory,
        clock: Callable[[], float] = time.monotonic,
        inference_workers: int = 1,
        host_mover: Mover = move_modules,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.probe = probe or probe_for(self.device)
        self.adapter_factory = adapter_factory
        self.clock = clock  # keep-alive time (injectable); waits use real time
        self.events = EventLog()
        self.budget_bytes = self._budget_bytes()
        self.ledger = Ledger(self.budget_bytes)
        self.scheduler = Scheduler(self, config.max_pending, config.max_wait_s)
        self.states = {
            name: ModelState(spec, config.keep_alive_for(spec))
            for name, spec in config.models.items()
        }
        self._init_public_names()
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="zooserve-loader")
        self._load_slot = asyncio.Lock()  # a load holds it until settled (never admission)
        self._inference = InferencePool(inference_workers, config.inference_timeout_s)
        self._tasks: set[asyncio.Task[Any]] = set()  # strong refs to (un)loads and sleeps
        self.batcher = Batcher()
        self.host = HostTier(self._host_budget_bytes(), self.device, host_mover)

    def _budget_bytes(self) -> int:
        setting = self.config.memory_budget_mb
        if setting == "auto":
            share = 0.9 if self.device.startswith("cuda") else 0.5
            return int(self.probe.total_bytes() * share)
        return int(float(setting) * MB)

    def _host_budget_bytes(self) -> int:
        """Pinned host memory for parked models: on CUDA "auto" is a quarter of the RAM (at
        most 32 GiB); on the CPU parking saves nothing (the weights are in RAM already)."""
        setting = self.config.host_memory_budget_mb
        if setting != "auto":
            return int(float(setting) * MB)
        if not self.device.startswith("cuda"):
            return 0
        return int(min(psutil.virtual_memory().total / 4, 32 * 1024 * MB))

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Preload pinned models (keep-alive runs on timers: nothing to start)."""
        for state in self.states.values():
            if state.pinned and state.spec.enabled and self.available(state.name):
                await self.load(state.name, reason="pinned in config")

    async def close(self) -> None:
        for state in self.states.values():
            state.cancel_timer()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for state in self.states.values():
            if state.status is Status.LOADED and state.refcount == 0:
                await self._start_unload(state, "unload", "service shutdown")
        for name in self.host.names():
            parked = self.host.take(name)
            if parked is not None:
                await self._unload_adapter(parked)
        self._loader.shutdown(wait=True)
        self._inference.shutdown(wait=True)

    def _dispatch(self) -> None:
        self.scheduler.dispatch()

    # --- leases ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[ModelAdapter]:
        """Lease a loaded model (loading it if needed); it cannot be evicted while leased."""
        async with self.use_all([name]) as adapters:
            yield adapters[name]

    @contextlib.asynccontextmanager
    async def use_all(self, names: Sequence[str]) -> AsyncIterator[dict[str, ModelAdapter]]:
        """Lease several models admitted as one plan (a tracker and its detector): they fit
        together or the request waits, so a request never holds one while waiting for another."""
        states = await self._acquire(list(dict.fromkeys(names)))
        try:
            adapters = {}
            for state in states:
                assert state.adapter is not None
                adapters[state.name] = state.adapter
            yield adapters
        finally:
            for state in states:
                self._end_lease(state)

    async def _acquire(self, names: list[str]) -> list[ModelState]:
        states = [self.state(name) for name in names]
        for attempt in range(REMEASURE_RETRIES + 1):
            for state in states:
                await self.prepare(state)
            ticket = Ticket(", ".join(names), models=tuple(names), arrived=self.clock())
            await self.scheduler.admit(
                ticket, self.config.admission_timeout_s, request_context.client_gone.get()
            )
            # Leased; wait for the loads the grant started (or shares). Their futures are taken
            # now: one may end (and clear its state's transition) while another is awaited.
            loads = [s.transition for s in states if s.status is Status.LOADING and s.transition]
            try:
                for load in loads:
                    await asyncio.shield(load)
                if any(s.status is not Status.LOADED for s in states):
                    raise AssertionError(f"admitted plan {names} is not loaded")
                return states
            except BaseException as exc:
                for state in states:
                    self._end_lease(state)
                # Measured above its admission: queue again, admitted by the measured size.
                if not isinstance(exc, Remeasured) or attempt == REMEASURE_RETRIES:
                    raise
        raise AssertionError("unreachable")

    def _lease(self, state: ModelState) -> None:
        state.refcount += 1
        state.last_used = self.clock()
        state.cancel_timer()

    def _end_lease(self, state: ModelState) -> None:
        state.refcount -= 1
        state.last_used = self.clock()
        if state.refcount == 0:
            requested = request_context.keep_alive.get()
            state.keep_alive = (
                requested if requested is not None else self.config.keep_alive_for(state.spec)
            )
            claim = self.ledger.get(state.key)
            if claim is not None:
                claim.reclaim = Reclaim.NEVER if state.pinned else Reclaim.EVICT
            self._arm_keep_alive(state)
        self._dispatch()

    def _arm_keep_alive(self, state: ModelState) -> None:
        """One timer per idle model: it unloads the model when its keep-alive runs out."""
        state.cancel_timer()
        if not state.idle or state.pinned:
            return
        if state.keep_alive == 0:
            self._start_unload(state, "unload", "keep_alive 0: unload after the request")
            return
        loop = asyncio.get_running_loop()
        state.timer = loop.call_later(state.keep_alive, self._expire, state)

    def _expire(self, state: ModelState) -> None:
        state.timer = None
        if state.idle and not state.pinned and self._expired(state):
            self._start_unload(state, "unload", "keep_alive expired", park=True)

    # --- the API's verbs ---------------------------------------------------------------------

    def state(self, name: str) -> ModelState:
        state = self.states.get(name)
        if state is None:
            raise ModelNotFound(
                f"unknown model {name!r}", {"available_models": sorted(self.states)}
            )
        return state

    async def load(
        self, name: str, reason: str = "requested", keep_alive: float | None = None
    ) -> dict[str, Any]:
        """Load without keeping a lease (the /models/load endpoint). Idempotent."""
        state = self.state(name)
        loads, wakes = state.load_count, state.wake_count
        token = request_context.keep_alive.set(keep_alive) if keep_alive is not None else None
        try:
            async with self.use(name):
                pass
        finally:
            if token is not None:
                request_context.keep_alive.reset(token)
        if (state.load_count, state.wake_count) == (loads, wakes):
            return {"model_id": name, "status": "already_loaded", "bytes": state.measured_bytes}
        woken = state.wake_count != wakes
        return {
            "model_id": name,
            "status": "loaded",
            "tier_from": "host" if woken else "disk",
            "seconds": state.last_wake_seconds if woken else state.last_load_seconds,
            "bytes": state.measured_bytes,
            "peak_bytes": state.measured_peak_bytes,
        }

    async def unload(self, name: str, reason: str = "requested") -> dict[str, Any]:
        """Unload now. A model in use is refused (409) rather than pulled from under a request."""
        state = self.state(name)
        if state.transition is not None:
            await asyncio.shield(state.transition)
        if state.status is not Status.LOADED:
            parked = self.host.take(name)
            if parked is None:
                return {"model_id": name, "status": "not_loaded"}
            await self._unload_adapter(parked)
            self.events.record(Event("unload", name, f"{reason} (from host memory)"))
            return {"model_id": name, "status": "unloaded", "tier": "host"}
        if state.refcount > 0:
            raise ModelInUse(
                f"model {name!r} is in use by {state.refcount} request(s); retry when they finish",
                {"refcount": state.refcount},
                retry_after=1,
            )
        event = await self._start_unload(state, "unload", reason)
        return {"model_id": name, "status": "unloaded", **event.details, "seconds": event.seconds}

    async def reap_expired(self) -> list[str]:
        """Unload idle models whose keep-alive ran out by `clock` now (the timers do this as
        time passes; this is for an injected clock and for operators). Returns their names."""
        reaped = []
        for state in list(self.states.values()):
            # While an earlier one unloaded, this one may have been leased, or used and let go.
            if state.idle and not state.pinned and self._expired(state):
                await self._start_unload(state, "unload", "keep_alive expired", park=True)
                reaped.append(state.name)
        return reaped

    def _expired(self, state: ModelState) -> bool:
        return self.clock() - state.last_used >= state.keep_alive
