"""Loads, and reclaiming memory from claims: each runs as its own task, loads one at a time on
the loader thread.

A task, not the caller, carries a transition to its end: a caller that goes away (a client
disconnect, a cancelled eviction) never leaves a model half-loaded or marked unloaded while
the loader thread still holds its memory. A load is admitted by its claim (see admission.py);
when the measured size exceeds the claim, the claim must grow through the scheduler (from
idle claims only, at once) or the new model is unloaded again: the ledger never goes over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import torch

from zooserve.catalog import Config, ModelSpec
from zooserve.core.errors import ModelLoadFailed, ServiceBusy, ZooError
from zooserve.core.events import Event, EventLog
from zooserve.families.base import ModelAdapter
from zooserve.manager.background import Background
from zooserve.manager.claims import Claim, Ledger, Reclaim, model_name
from zooserve.manager.leases import Leases
from zooserve.manager.scheduler import Scheduler, Ticket
from zooserve.manager.state import ModelState, Status, expected_bytes
from zooserve.manager.unloading import Unloader
from zooserve.runtimes.inference import InferencePool
from zooserve.runtimes.memory import MB, LoadFootprint, MemoryProbe, load_measured

log = logging.getLogger("zooserve.manager")
OOM_ERRORS: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError, MemoryError)
#: Builds an (unloaded) adapter for a spec, its weight source and the device.
AdapterFactory = Callable[[ModelSpec, str, str], ModelAdapter]


class Remeasured(ServiceBusy):
    """The model measured above its admission and no idle claim could make the difference:
    it was unloaded again; its waiters re-queue with the measured size."""


class Loader:
    """Puts models on the device (from disk, or woken from the host tier) and gets memory
    back from claims (evicts a model through the unloader, or sleeps an engine)."""

    def __init__(
        self,
        config: Config,
        device: str,
        *,
        probe: MemoryProbe,
        ledger: Ledger,
        events: EventLog,
        states: dict[str, ModelState],
        background: Background,
        unloader: Unloader,
        leases: Leases,
        lanes: InferencePool,
        scheduler: Scheduler,
        adapter_factory: AdapterFactory,
        clock: Callable[[], float],
        public_text: Callable[[str], str],
    ) -> None:
        self.config, self.device, self.probe = config, device, probe
        self.ledger, self.events, self.states = ledger, events, states
        self.background, self.unloader, self.leases = background, unloader, leases
        self.lanes, self.scheduler = lanes, scheduler
        self.adapter_factory, self.clock = adapter_factory, clock
        self.public_text = public_text  # error texts without server paths
        self._load_slot = asyncio.Lock()  # a load holds it until settled (never admission)

    def model_claim(self, state: ModelState, nbytes: int, reason: str) -> Claim:
        return Claim(
            state.key,
            nbytes,
            Reclaim.NEVER if state.pinned else Reclaim.EVICT,
            reason,
            busy=lambda: not state.idle,
            last_used=self.clock(),
        )

    def begin(self, state: ModelState, nbytes: int, reason: str) -> None:
        """Claim `nbytes` and mark the model LOADING now (its callers wait on the transition);
        called by the scheduler's grant, which checked the claim fits."""
        claim = self.ledger.put(self.model_claim(state, nbytes, reason))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.transition, state.status = future, Status.LOADING
        self.background.spawn(self._load(state, claim, future, reason))

    async def _load(
        self, state: ModelState, claim: Claim, future: asyncio.Future[None], reason: str
    ) -> None:
        """One load at a time from start to settled: the next load's memory must not appear
        while this one may still be measured too big and be unloaded again."""
        async with self._load_slot:
            await self._load_now(state, claim, future, reason)

    async def _load_now(
        self, state: ModelState, claim: Claim, future: asyncio.Future[None], reason: str
    ) -> None:
        admitted = claim.nbytes
        try:
            assert state.source is not None
            started = time.perf_counter()
            parked = self.unloader.host_tier.take(state.name)
            if parked is not None:
                footprint = await self._wake(state, parked)
            else:
                await self._claim_expected(state, claim)
                footprint = await self._load_with_oom_retry(state, state.source, admitted)
            seconds = time.perf_counter() - started
            state.footprint = footprint
            state.measured_bytes, state.measured_peak_bytes = footprint.bytes, footprint.peak_bytes
            await self._settle_claim(state, claim, max(footprint.bytes, footprint.peak_bytes))
            self.lanes.open_lane(state.name, int(state.spec.options.get("concurrency", 1)))
            if parked is not None:
                state.wake_count += 1
                state.last_wake_seconds = seconds
            else:
                state.load_count += 1
                state.last_load_seconds = seconds
            state.last_error = None
            state.last_used, state.status = self.clock(), Status.LOADED
            details = {
                "admitted_bytes": admitted,
                "claim_bytes": claim.nbytes,
                "peak_bytes": footprint.peak_bytes,
                "rss_delta": footprint.rss_delta,
                "method": footprint.method,
            }
            kind = "wake" if parked is not None else "load"
            self.events.record(Event(kind, state.name, reason, seconds, footprint.bytes, details))
            future.set_result(None)
        except BaseException as exc:
            state.footprint = None
            if state.adapter is not None:  # measured too big: give its memory back first
                state.status = Status.UNLOADING  # nobody is admitted to it meanwhile
                adapter, state.adapter = state.adapter, None
                await self.unloader.drop(adapter)
            state.status = Status.UNLOADED
            if self.ledger.get(claim.key) is claim:
                self.ledger.drop(claim.key)
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it; none is fine too
        finally:
            state.transition = None
            if state.status is Status.LOADED and state.refcount == 0:
                self.leases.arm_keep_alive(state)
            self.scheduler.dispatch()

    async def _wake(self, state: ModelState, adapter: ModelAdapter) -> LoadFootprint:
        """Copy a parked model back to the device (the host tier): no files, no rebuild."""
        await self.background.on_thread(self.unloader.host_tier.wake, adapter)
        state.adapter = adapter
        nbytes = adapter.memory_bytes()
        peak = max(nbytes, state.measured_peak_bytes or 0)
        return LoadFootprint(nbytes, peak, 0, "tensor_bytes (woken from host memory)")

    async def _claim_expected(self, state: ModelState, claim: Claim) -> None:
        """Admitted before a relative measured above its estimate: claim what this model is now
        expected to hold before its memory appears (issue #18 item 5), as far as the budget
        less what can never be reclaimed allows; if busy claims hold that, raise Remeasured
        and its requests queue again, admitted by the expected size."""
        expected = expected_bytes(state, self.states.values())
        if expected <= state.expected_at_admission:
            return  # admitted knowing as much (and as far as its plan's ceiling allowed)
        never = (c.nbytes for c in self.ledger if c.reclaim is Reclaim.NEVER and c is not claim)
        expected = min(expected, self.ledger.budget_bytes - sum(never))
        if expected > claim.nbytes:
            await self._settle_claim(state, claim, expected, "expected")

    async def _settle_claim(
        self, state: ModelState, claim: Claim, measured: int, how: str = "measured"
    ) -> None:
        """Make the claim the `measured` size (or the expected one, before the load): shrink at
        once, or grow from idle claims now; else raise Remeasured (its waiters re-queue)."""
        if measured <= claim.nbytes:
            self.ledger.resize(claim.key, measured)
            return
        grown = Claim(claim.key, measured, claim.reclaim, f"{how} above its admission")
        ticket = Ticket(f"{state.name} ({how})", extras=(grown,), urgent=True, patient=False)
        try:
            await self.scheduler.admit(ticket, self.config.admission_timeout_s)
        except ServiceBusy as exc:
            self.events.record(
                Event("remeasured", state.name, f"{how} above its admission", bytes=measured)
            )
            raise Remeasured(
                f"model {state.name!r} {how} {measured / MB:.0f} MB, above the "
                f"{claim.nbytes / MB:.0f} MB it was admitted with, and busy models hold the "
                f"difference: it was unloaded; it will be admitted by its {how} size",
                {**exc.details, "measured_bytes": measured, "admitted_bytes": claim.nbytes},
                retry_after=exc.retry_after,
            ) from None

    async def _load_with_oom_retry(
        self, state: ModelState, source: str, admitted: int
    ) -> LoadFootprint:
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                adapter = self.adapter_factory(state.spec, source, self.device)
                # On CUDA the warm-up's peak is measured with inference paused (quiet window):
                # other models' activations must not count as this model's.
                quiet = self.lanes.quiet if self.device.startswith("cuda") else None
                footprint = await self.background.on_thread(
                    load_measured, adapter, self.probe, quiet
                )
                state.adapter = adapter
                return footprint
            except OOM_ERRORS as exc:
                self._record_failure(state, started, exc)
                if attempt == 2:
                    raise ServiceBusy(
                        f"out of memory loading {state.name!r} after evicting idle models",
                        {"admitted_bytes": admitted},
                        retry_after=30,
                    ) from exc
                await self.evict_idle(f"{state.name} (out of memory)", exclude={state.key})
            except ZooError as exc:
                self._record_failure(state, started, exc)
                raise
            except Exception as exc:
                self._record_failure(state, started, exc)
                log.error("loading %s from %s failed", state.name, source, exc_info=exc)
                raise ModelLoadFailed(
                    f"could not load {state.name!r}: {state.last_error}",
                    {"source": Path(source).name},
                ) from exc
        raise AssertionError("unreachable")

    def _record_failure(self, state: ModelState, started: float, exc: BaseException) -> None:
        # Shown to callers (/models/info, errors): server paths become their public names.
        state.last_error = self.public_text(f"{type(exc).__name__}: {exc}")
        self.events.record(
            Event("load_failed", state.name, state.last_error, time.perf_counter() - started)
        )

    # --- getting memory back ----------------------------------------------------------------

    async def evict_idle(self, reason: str, exclude: set[str]) -> None:
        """Reclaim every idle claim but those under `exclude` (the OOM retries of a load and of
        an inference call, see lanes.py) and wait for them."""
        keys = [c.key for c in self.ledger if c.key not in exclude and c.reclaimable]
        tasks = [self.reclaim(key, reason) for key in keys]
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)

    def reclaim(self, key: str, for_whom: str) -> asyncio.Task[Any] | None:
        """Evict or sleep the claim under `key` in a task of its own (returned)."""
        claim = self.ledger.get(key)
        if claim is None:
            return None
        claim.reclaiming = True
        name = model_name(key)
        if name is not None and name in self.states:
            reason = f"make room for {for_whom}"
            return self.unloader.start(self.states[name], "evict", reason, park=True)
        assert claim.sleeper is not None, f"{key} is not sleepable"
        return self.background.spawn(self._sleep(claim, claim.sleeper, for_whom))

    async def _sleep(
        self, claim: Claim, sleeper: Callable[[], Awaitable[object]], for_whom: str
    ) -> None:
        """Ask an engine to release its memory (it shrinks its claim through the ledger)."""
        try:
            await sleeper()
            self.events.record(Event("sleep", claim.key, f"make room for {for_whom}"))
        except Exception as exc:
            self.events.record(Event("sleep_failed", claim.key, f"{type(exc).__name__}: {exc}"))
        finally:
            if self.ledger.get(claim.key) is claim:  # not shrunk (replaced) by the sleep
                claim.reclaiming = False
            self.scheduler.dispatch()
