"""ModelManager: the one owner of loaded models, a face over the parts that do the work.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from zooserve.catalog import Config, ModelSpec
from zooserve.core import request_context
from zooserve.core.errors import ConfigError
from zooserve.core.events import EventLog
from zooserve.families import adapter_class
from zooserve.families.base import ModelAdapter
from zooserve.manager.admission import LedgerAdmission
from zooserve.manager.background import Background
from zooserve.manager.claims import Claim, Ledger, Reclaim
from zooserve.manager.lanes import Lanes
from zooserve.manager.leases import Leases
from zooserve.manager.loader import AdapterFactory, Loader, Remeasured
from zooserve.manager.lookup import prepare
from zooserve.manager.reporting import Reports
from zooserve.manager.reservations import Reservations
from zooserve.manager.scheduler import Scheduler, Ticket
from zooserve.manager.state import ModelState, Status
from zooserve.manager.tiers import HostTier, Mover, host_budget_bytes, move_modules
from zooserve.manager.unloading import Unloader
from zooserve.runtimes.inference import InferencePool
from zooserve.runtimes.memory import MB, MemoryProbe, auto_budget_bytes, probe_for
from zooserve.runtimes.torch_runtime import resolve_device

T = TypeVar("T")
#: Times a request re-queues after its model measured above its admission.
REMEASURE_RETRIES = 2


def default_adapter_factory(spec: ModelSpec, source: str, device: str) -> ModelAdapter:
    if not spec.family:
        raise ConfigError(f"models.{spec.name}.family is not set and could not be inferred")
    return adapter_class(spec.family)(spec, source, device)


class ModelManager:
    """Owns every loaded model. Use `async with manager.use(name) as adapter:`.

    A face over its parts: the claims `ledger`, the `scheduler` (queue) and its `admission`
    (plans against the ledger), the `leases` (refcounts, keep-alive), the `loader` and
    `unloader` (transitions, host tier) and the inference `lanes`; `reports` for the API."""

    def __init__(
        self,
        config: Config,
        *,
        probe: MemoryProbe | None = None,
        adapter_factory: AdapterFactory = default_adapter_factory,
        clock: Callable[[], float] = time.monotonic,
        inference_workers: int = 1,
        host_mover: Mover = move_modules,
        new_ledger: Callable[[int], Ledger] = Ledger,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.probe = probe or probe_for(self.device)
        self.clock = clock  # keep-alive time (injectable); waits use real time
        self.events = EventLog()
        self.budget_bytes = self._budget_bytes()
        self.ledger = new_ledger(self.budget_bytes)
        self.states = {
            name: ModelState(spec, config.keep_alive_for(spec))
            for name, spec in config.models.items()
        }
        self.host_tier = HostTier(host_budget_bytes(config, self.device), self.device, host_mover)
        self.scheduler = Scheduler(
            self.ledger,
            config.max_pending,
            config.max_wait_s,
            settle_s=config.swap_settle_ms / 1000,
        )
        self.reports = Reports(
            config,
            self.states,
            self.ledger,
            self.scheduler,
            self.host_tier,
            clock,
            any_family=adapter_factory is not default_adapter_factory,
        )
        self.background = Background()
        pool = InferencePool(inference_workers, config.inference_timeout_s)
        self.unloader = Unloader(
            self.probe,
            self.ledger,
            self.events,
            self.host_tier,
            pool,
            self.background,
            self.scheduler.dispatch,
        )
        self.leases = Leases(config, self.ledger, self.unloader, self.scheduler, clock)
        self.lanes = Lanes(pool, self.states, self.leases, self.events, probe=self.probe)
        self.loader = Loader(
            config,
            self.device,
            probe=self.probe,
            ledger=self.ledger,
            events=self.events,
            states=self.states,
            background=self.background,
            unloader=self.unloader,
            leases=self.leases,
            lanes=pool,
            scheduler=self.scheduler,
            adapter_factory=adapter_factory,
            clock=clock,
            public_text=self.reports.public_text,
        )
        self.lanes.make_room = self.loader.evict_idle  # an inference OOM's retry
        self.reserved = Reservations(
            config, self.ledger, self.scheduler, self.events, self.state, clock
        )
        self.scheduler.admission = LedgerAdmission(
            config, self.ledger, self.states, self.loader, self.leases, clock
        )

    def _budget_bytes(self) -> int:
        setting = self.config.memory_budget_mb
        if setting == "auto":
            return auto_budget_bytes(self.probe)
        return int(float(setting) * MB)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Preload pinned models (keep-alive runs on timers: nothing to start)."""
        for state in self.states.values():
            if state.pinned and state.spec.enabled and self.available(state.name):
                await self.load(state.name, reason="pinned in config")

    async def close(self) -> None:
        for state in self.states.values():
            state.cancel_timer()
        await self.background.settle()
        for state in self.states.values():
            if state.status is Status.LOADED and state.refcount == 0:
                await self.unloader.start(state, "unload", "service shutdown")
        await self.unloader.drop_parked()
        self.background.shutdown()
        self.lanes.pool.shutdown(wait=True)

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
                self.leases.end(state)

    async def _acquire(self, names: list[str]) -> list[ModelState]:
        states = [self.state(name) for name in names]
        for attempt in range(REMEASURE_RETRIES + 1):
            for state in states:
                await prepare(self.config, self.device, state)
            ticket = Ticket(", ".join(names), models=tuple(names))
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
                    self.leases.end(state)
                # Measured above its admission: queue again, admitted by the measured size.
                if not isinstance(exc, Remeasured) or attempt == REMEASURE_RETRIES:
                    raise
        raise AssertionError("unreachable")

    def wanted_models(self) -> set[str]:
        """Models held by a lease or wanted by a queued plan: what this manager must keep or
        is about to load (a replica tells its router these)."""
        leased = {name for name, state in self.states.items() if state.refcount > 0}
        return leased | self.scheduler.queued_models()

    # --- the API's verbs ---------------------------------------------------------------------

    def state(self, name: str) -> ModelState:
        return self.reports.state(name)

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
        return await self.unloader.unload(self.state(name), reason)

    async def reap_expired(self) -> list[str]:
        """Unload idle models whose keep-alive ran out by `clock` now. Returns their names."""
        return await self.leases.reap_expired(list(self.states.values()))

    # --- claims beyond models ----------------------------------------------------------------

    @property
    def reservations(self) -> dict[str, int]:
        """Bytes claimed outside models (tracking sessions, engines), by key."""
        return self.reserved.by_key()

    def used_bytes(self) -> int:
        return self.ledger.used_bytes()

    async def reserve(
        self,
        key: str,
        nbytes: int,
        reason: str,
        *,
        reclaim: Reclaim = Reclaim.WAIT,
        sleeper: Callable[[], Awaitable[object]] | None = None,
        busy: Callable[[], bool] | None = None,
        floor: int = 0,
        holds: Sequence[str] = (),
    ) -> None:
        """Claim `nbytes` outside models under `key` (see Reservations.reserve)."""
        claim = Claim(key, nbytes, reclaim, reason, busy or (lambda: False), sleeper, floor)
        await self.reserved.reserve(claim, holds)

    def release(self, key: str, reason: str = "released") -> None:
        """Give back a claim outside models (no-op when absent)."""
        self.reserved.release(key, reason)

    # --- inference and reports (see lanes.py, reporting.py) ----------------------------------

    async def infer(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the lane of the model it uses, within `inference_timeout_s`."""
        return await self.lanes.infer(fn, *args)

    async def infer_batched(
        self, fn: Callable[..., list[T]], items: list[Any], *params: Any
    ) -> list[T]:
        """`fn(items, *params)` batched with concurrent calls to the same model."""
        return await self.lanes.infer_batched(fn, items, *params)

    def source(self, spec: ModelSpec) -> str | None:
        return self.reports.source(spec)

    def available(self, name: str) -> bool:
        return self.reports.available(name)

    def loaded_models(self) -> list[str]:
        return self.reports.loaded_models()

    def model_info(self, name: str) -> dict[str, Any]:
        return self.reports.model_info(name)

    def scheduler_status(self) -> dict[str, Any]:
        return self.reports.scheduler_status()
