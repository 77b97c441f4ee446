"""Loads and unloads: each runs as its own task, one at a time on the loader thread.

A task, not the caller, carries a transition to its end: a caller that goes away (a client
disconnect, a cancelled eviction) never leaves a model half-loaded or marked unloaded while
the loader thread still holds its memory. A load is admitted by its claim (see admission.py);
when the measured size exceeds the claim, the claim must grow through the scheduler (from
idle claims only, at once) or the new model is unloaded again: the ledger never goes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from zooserve import sources
from zooserve.catalog import ModelSpec
from zooserve.errors import ModelLoadFailed, ModelUnavailable, ServiceBusy, ZooError
from zooserve.events import Event
from zooserve.families import adapter_class
from zooserve.families.base import UNKNOWN_SIZE_BYTES, ModelAdapter
from zooserve.inference import InferencePool
from zooserve.manager.claims import Claim, Ledger
from zooserve.manager.scheduler import Scheduler, Ticket
from zooserve.manager.state import ModelState, Status
from zooserve.manager.tiers import HostTier
from zooserve.memory import (
    MB,
    LoadFootprint,
    MemoryProbe,
    admission_bytes,
    load_measured,
)

if TYPE_CHECKING:
    from zooserve.catalog import Config
    from zooserve.events import EventLog

log = logging.getLogger("zooserve.manager")
OOM_ERRORS: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError, MemoryError)
#: Builds an (unloaded) adapter for a spec, its weight source and the device.
AdapterFactory = Callable[[ModelSpec, str, str], ModelAdapter]


class Remeasured(ServiceBusy):
    """The model measured above its admission and no idle claim could make the difference:
    it was unloaded again; its waiters re-queue with the measured size."""


class Transitions:
    """Mixin of ModelManager: preparing, loading and unloading models."""

    config: Config
    device: str
    probe: MemoryProbe
    ledger: Ledger
    events: EventLog
    scheduler: Scheduler
    adapter_factory: AdapterFactory
    clock: Callable[[], float]
    _loader: ThreadPoolExecutor
    _load_slot: asyncio.Lock
    _inference: InferencePool
    host: HostTier
    _tasks: set[asyncio.Task[Any]]

    if TYPE_CHECKING:  # provided by the other parts of ModelManager

        def public_text(self, text: str) -> str: ...
        def model_claim(self, state: ModelState, nbytes: int, reason: str) -> Claim: ...
        def candidates(self, exclude: set[str], since: float = ...) -> list[Any]: ...
        def start_reclaim(self, key: str, for_whom: str) -> asyncio.Task[Any] | None: ...
        def _dispatch(self) -> None: ...
        def _arm_keep_alive(self, state: ModelState) -> None: ...
        async def _unload_adapter(self, adapter: ModelAdapter) -> None: ...

    async def prepare(self, state: ModelState) -> None:
        """Check a model can be loaded here at all (before it queues): enabled, weights on
        this machine, a known family; and estimate its size once, so admission (run on every
        change of state) reads no files. Off the event loop: locating and estimating read the
        disk (a config-only estimate builds the model on the meta device). Raises the
        caller-facing error. A loaded model was prepared already."""
        if state.status is Status.LOADED and state.estimate is not None:
            return
        source, family, estimate = await asyncio.to_thread(self._look_up, state.spec)
        state.spec.family, state.source, state.estimate = family, source, estimate

    def _look_up(self, spec: ModelSpec) -> tuple[str, str, int]:
        """(weights source, family, estimated bytes) of `spec`, or the error to answer."""
        if not spec.enabled:
            raise ModelUnavailable(f"model {spec.name!r} is disabled in the config")
        source = sources.locate(self.config, spec)
        if source is None:
            raise ModelUnavailable(
                f"model {spec.name!r} is not present on this machine "
                f"(offline: nothing is downloaded during a request)",
                {"model_id": spec.model_id, "fetch_with": sources.pull_command(spec)},
            )
        family = sources.infer_family(self.config, spec, source)
        if family is None:
            raise ModelLoadFailed(
                f"cannot tell the family of {spec.name!r}: set models.{spec.name}.family",
                {"source": Path(source).name},
            )
        return source, family, self.estimate_bytes(spec, family, source)

    def estimate_bytes(self, spec: ModelSpec, family: str, source: str) -> int:
        """The config's vram_mb, else the family's estimate from the weights or the model's
        config, else UNKNOWN_SIZE_BYTES (never 0: a model is never admitted for free)."""
        if spec.vram_mb is not None:
            return int(spec.vram_mb * MB)
        with contextlib.suppress(ZooError, ImportError):
            estimate = adapter_class(family).estimate_bytes(source, self.device)
            if estimate is not None:
                return estimate
        return UNKNOWN_SIZE_BYTES

    def admission_bytes(self, state: ModelState) -> int:
        """What a load is admitted by: the largest of the estimate (from `prepare`), the
        measured size and the measured peak (weights + warm-up activations)."""
        estimate = UNKNOWN_SIZE_BYTES if state.estimate is None else state.estimate
        return admission_bytes(estimate, state.measured_bytes, state.measured_peak_bytes)

    # --- loading -----------------------------------------------------------------------------

    def _begin_load(self, state: ModelState, nbytes: int, reason: str) -> None:
        """Claim `nbytes` and mark the model LOADING now (its callers wait on the transition);
        called by the scheduler's grant, which checked the claim fits."""
        claim = self.ledger.put(self.model_claim(state, nbytes, reason))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.transition, state.status = future, Status.LOADING
        task = asyncio.create_task(self._run_load(state, claim, future, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_load(
        self, state: ModelState, claim: Claim, future: asyncio.Future[None], reason: str
    ) -> None:
        """One load at a time from start to settled: the next load's memory must not appear
        while this one may still be measured too big and be unloaded again."""
        async with self._load_slot:
            await self._run_load_now(state, claim, future, reason)

    async def _run_load_now(
        self, state: ModelState, claim: Claim, future: asyncio.Future[None], reason: str
    ) -> None:
        admitted = claim.nbytes
        try:
            assert state.source is not None
            started = time.perf_counter()
            parked = self.host.take(state.name)
            if parked is not None:
                footprint = await self._wake(state, parked)
            else:
                footprint = await self._load_with_oom_retry(state, state.source, admitted)
            seconds = time.perf_counter() - started
            state.footprint = footprint
            state.measured_bytes, state.measured_peak_bytes = footprint.bytes, footprint.peak_bytes
            await self._settle_claim(state, claim, max(footprint.bytes, footprint.peak_bytes))
            self._inference.open_lane(state.name, int(state.spec.options.get("concurrency", 1)))
            if parked is not None:
                state.wake_count += 1
                state.last_wake_seconds = seconds
            else:
                state.load_count += 1
                state.last_load_seconds = seconds
            state.last_error = None
            state.last_used, state.status = self.clock(), Status.LOADED
            self.events.record(
                Event(
                    "wake" if parked is not None else "load",
                    state.name,
                    reason,
                    seconds,
                    footprint.bytes,
                    {
                        "admitted_bytes": admitted,
                        "claim_bytes": claim.nbytes,
                        "peak_bytes": footprint.peak_bytes,
                        "rss_delta": footprint.rss_delta,
                        "method": footprint.method,
                    },
                )
            )
            future.set_result(None)
        except BaseException as exc:
            state.footprint = None
            if state.adapter is not None:  # measured too big: give its memory back first
                state.status = Status.UNLOADING  # nobody is admitted to it meanwhile
                adapter, state.adapter = state.adapter, None
                await self._unload_adapter(adapter)
            state.status = Status.UNLOADED
            if self.ledger.get(claim.key) is claim:
                self.ledger.drop(claim.key)
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it; none is fine too
        finally:
            state.transition = None
            if state.status is Status.LOADED and state.refcount == 0:
                self._arm_keep_alive(state)
            self._dispatch()

    async def _wake(self, state: ModelState, adapter: ModelAdapter) -> LoadFootprint:
        """Copy a parked model back to the device (the host tier): no files, no rebuild."""
        await asyncio.get_running_loop().run_in_executor(self._loader, self.host.wake, adapter)
        state.adapter = adapter
        nbytes = adapter.memory_bytes()
        peak = max(nbytes, state.measured_peak_bytes or 0)
        return LoadFootprint(nbytes, peak, 0, "tensor_bytes (woken from host memory)")

    async def _settle_claim(self, state: ModelState, claim: Claim, measured: int) -> None:
        """Make the claim the measured size: shrink at once, or grow from idle claims now."""
        if measured <= claim.nbytes:
            self.ledger.resize(claim.key, measured)
            return
        grown = Claim(claim.key, measured, claim.reclaim, "measured above its admission")
        ticket = Ticket(f"{state.name} (measured)", extras=(grown,), urgent=True, patient=False)
        try:
            await self.scheduler.admit(ticket, self.config.admission_timeout_s)
        except ServiceBusy as exc:
            self.events.record(
                Event("remeasured", state.name, "measured above its admission", bytes=measured)
            )
            raise Remeasured(
                f"model {state.name!r} measured {measured / MB:.0f} MB, above the "
                f"{claim.nbytes / MB:.0f} MB it was admitted with, and busy models hold the "
                "difference: it was unloaded; it will be admitted by its measured size",
                {**exc.details, "measured_bytes": measured, "admitted_bytes": claim.nbytes},
                retry_after=exc.retry_after,
            ) from None

    async def _load_with_oom_retry(
        self, state: ModelState, source: str, admitted: int
    ) -> LoadFootprint:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                adapter = self.adapter_factory(state.spec, source, self.device)
                # On CUDA the warm-up's peak is measured with inference paused (quiet window):
                # other models' activations must not count as this model's.
                quiet = self._inference.quiet if self.device.startswith("cuda") else None
                footprint = await loop.run_in_executor(
                    self._loader, load_measured, adapter, self.probe, quiet
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
                await self._evict_idle(f"{state.name} (out of memory)", exclude={state.key})
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

    async def _evict_idle(self, reason: str, exclude: set[str]) -> None:
        """Reclaim every idle claim (the OOM retry) and wait for them."""
        tasks = [self.start_reclaim(c.key, reason) for c in self.candidates(exclude)]
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)

    def _record_failure(self, state: ModelState, started: float, exc: BaseException) -> None:
        # Shown to callers (/models/info, errors): server paths become their public names.
        state.last_error = self.public_text(f"{type(exc).__name__}: {exc}")
        self.events.record(
            Event("load_failed", state.name, state.last_error, time.perf_counter() - started)
        )
