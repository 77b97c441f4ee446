"""ModelManager: the one owner of loaded models.

Lazy loads on first use, single-flight per model, one load at a time on a dedicated loader
thread, admission by bytes against the budget, eviction of idle models only (pins, then
keep-alive, then least recently used, cheaper reloads first on ties), verified unloads, and an
event for everything. All state lives on the event loop thread, so it changes only between
awaits; blocking work runs on the loader thread (loads, unloads) or the inference pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from zooserve import catalog
from zooserve.catalog import Config, ModelSpec
from zooserve.errors import (
    BudgetExceeded,
    ConfigError,
    ModelInUse,
    ModelLoadFailed,
    ModelNotFound,
    ModelUnavailable,
    ServiceBusy,
    ZooError,
)
from zooserve.events import Event, EventLog
from zooserve.families import adapter_class
from zooserve.families.base import ModelAdapter
from zooserve.inference import InferencePool
from zooserve.memory import (
    MB,
    LoadFootprint,
    MemoryProbe,
    load_measured,
    probe_for,
    unload_verified,
)
from zooserve.runtimes.torch_runtime import resolve_device

log = logging.getLogger("zooserve.manager")
T = TypeVar("T")
#: Builds an (unloaded) adapter for a spec, its weight source and the device.
AdapterFactory = Callable[[ModelSpec, str, str], ModelAdapter]
OOM_ERRORS: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError, MemoryError)


class Status(enum.StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"


@dataclass
class ModelState:
    spec: ModelSpec
    keep_alive: float
    status: Status = Status.UNLOADED
    adapter: ModelAdapter | None = None
    refcount: int = 0
    waiting: int = 0  # callers waiting on this model's load; it must not be evicted under them
    claimed_bytes: int = 0  # the admitted estimate, counted while LOADING (0 while queued)
    footprint: LoadFootprint | None = None
    measured_bytes: int | None = None  # kept across unloads: the next admission uses it
    load_count: int = 0
    last_load_seconds: float | None = None
    last_used: float = 0.0
    last_error: str | None = None
    transition: asyncio.Future[None] | None = None

    @property
    def pinned(self) -> bool:
        return self.keep_alive < 0

    @property
    def idle(self) -> bool:
        return self.status is Status.LOADED and self.refcount == 0 and self.waiting == 0


#: An absolute path in free text (not a URL's): shown as `…/<last part>`.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+([\w.@+-]+)")


def default_adapter_factory(spec: ModelSpec, source: str, device: str) -> ModelAdapter:
    if not spec.family:
        raise ConfigError(f"models.{spec.name}.family is not set and could not be inferred")
    return adapter_class(spec.family)(spec, source, device)


class ModelManager:
    """Owns every loaded model. Use `async with manager.use(name) as adapter:`."""

    def __init__(
        self,
        config: Config,
        *,
        probe: MemoryProbe | None = None,
        adapter_factory: AdapterFactory = default_adapter_factory,
        clock: Callable[[], float] = time.monotonic,
        inference_workers: int = 1,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.probe = probe or probe_for(self.device)
        self.adapter_factory = adapter_factory
        self.clock = clock
        self.events = EventLog()
        self.budget_bytes = self._budget_bytes()
        self.states = {
            name: ModelState(spec, config.keep_alive_for(spec))
            for name, spec in config.models.items()
        }
        #: Server directories as written and as resolved -> the names callers know them by.
        self._public_names = [
            (str(form), name)
            for path, name in (
                (config.resolve_path(config.model_zoo_path), "{MODEL_ZOO_PATH}"),
                (config.media_dir, "{media_root}"),
            )
            for form in (Path(path).resolve(), path)
        ]
        self.reservations: dict[
            str, int
        ] = {}  # tracking sessions, engines: bytes held outside models
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="zooserve-loader")
        self._inference = InferencePool(inference_workers, config.inference_timeout_s)
        self._load_lock = asyncio.Lock()
        self._room = asyncio.Event()  # set whenever a lease ends or memory is given back
        self._reaper: asyncio.Task[None] | None = None
        self._loads: set[asyncio.Task[Any]] = set()  # strong refs to running (un)load tasks

    def _budget_bytes(self) -> int:
        setting = self.config.memory_budget_mb
        if setting == "auto":
            share = 0.9 if self.device.startswith("cuda") else 0.5
            return int(self.probe.total_bytes() * share)
        return int(float(setting) * MB)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, reap_interval: float = 5.0) -> None:
        """Preload pinned models and start the keep-alive reaper."""
        for state in self.states.values():
            if state.pinned and state.spec.enabled and self.available(state.spec.name):
                await self.load(state.spec.name, reason="pinned in config")
        self._reaper = asyncio.create_task(self._reap_forever(reap_interval))

    async def close(self) -> None:
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*self._loads, return_exceptions=True)
        for state in self.states.values():
            if state.status is Status.LOADED and state.refcount == 0:
                await self._unload(state, kind="unload", reason="service shutdown")
        self._loader.shutdown(wait=True)
        self._inference.shutdown(wait=True)

    # --- leases ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[ModelAdapter]:
        """Lease a loaded model (loading it if needed); it cannot be evicted while leased."""
        state = await self._acquire(name)
        try:
            assert state.adapter is not None
            yield state.adapter
        finally:
            state.refcount -= 1
            state.last_used = self.clock()
            if state.refcount == 0:
                self._room.set()

    async def infer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking inference in the inference pool (never on the event loop or loader),
        with the `inference_timeout_s` deadline (see zooserve.inference)."""
        return await self._inference.run(fn, *args, on_stuck=lambda f: self._hold(fn, args, f))

    def _hold(self, fn: Callable[..., Any], args: tuple[Any, ...], running: Any) -> None:
        """Keep the models a stuck call uses leased until its thread really ends."""
        used = {id(getattr(fn, "__self__", None)), *(id(a) for a in args)}
        for state in self.states.values():
            if state.adapter is not None and id(state.adapter) in used:
                state.refcount += 1
                self.events.record(Event("inference_stuck", state.spec.name, "inference timed out"))

                def release(_: Any, state: ModelState = state) -> None:
                    state.refcount -= 1
                    if state.refcount == 0:
                        self._room.set()

                running.add_done_callback(release)

    async def _acquire(self, name: str) -> ModelState:
        state = self.state(name)
        while True:
            if state.status is Status.LOADED:
                state.refcount += 1
                state.last_used = self.clock()
                return state
            await self._await_transition(state, reason="first use")

    async def _await_transition(self, state: ModelState, reason: str) -> None:
        """Share the load or unload in flight, or start a load; raises the load's error.

        The caller counts in `waiting` until it resumes: the load task hands the load lock to
        the next queued load before this caller runs again, and that load must not evict the
        model in between (two such callers would evict each other's model forever).
        """
        transition = state.transition or self._load_single_flight(state, reason)
        state.waiting += 1
        try:
            await asyncio.shield(transition)
        finally:
            state.waiting -= 1

    def _load_single_flight(self, state: ModelState, reason: str) -> asyncio.Future[None]:
        """Mark the model LOADING now (so concurrent callers wait on it) and start the load.

        The load runs as its own task: a caller that goes away (client disconnect) does not
        abandon it half-way; the model finishes loading and stays idle for the next request.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.transition = future
        state.status = Status.LOADING
        state.waiting += 1

        async def run() -> None:
            try:
                await self._load(state, reason)
                future.set_result(None)
            except BaseException as exc:
                state.status, state.adapter, state.footprint = Status.UNLOADED, None, None
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it; none is fine too
            finally:
                state.waiting -= 1
                state.claimed_bytes = 0
                state.transition = None

        self._loads.add(task := asyncio.create_task(run()))
        task.add_done_callback(self._loads.discard)
        return future

    # --- loading -----------------------------------------------------------------------------

    def state(self, name: str) -> ModelState:
        state = self.states.get(name)
        if state is None:
            raise ModelNotFound(
                f"unknown model {name!r}", {"available_models": sorted(self.states)}
            )
        return state

    def source(self, spec: ModelSpec) -> str | None:
        return catalog.locate(self.config, spec)

    def available(self, name: str, _seen: frozenset[str] = frozenset()) -> bool:
        """Enabled and its weights are here; a composite model (a detection tracker) only if
        the detector it names is available too."""
        spec = self.state(name).spec
        if not (spec.enabled and self.source(spec) is not None):
            return False
        detector = spec.options.get("detector") if spec.family == "detection_tracker" else None
        if detector is None:
            return True
        seen = _seen | {name}
        return detector in self.states and detector not in seen and self.available(detector, seen)

    def public_text(self, text: str) -> str:
        """`text` with this server's directories replaced by the names callers know them by
        (responses never show absolute server paths)."""
        for path, name in self._public_names:
            text = text.replace(path, name)
        return _ABSOLUTE_PATH.sub(r"…/\1", text)

    def estimate_bytes(self, state: ModelState, source: str | None = None) -> int:
        """Measured footprint when known, else the config's vram_mb, else weight-file size."""
        if state.measured_bytes is not None:
            return state.measured_bytes
        if state.spec.vram_mb is not None:
            return int(state.spec.vram_mb * MB)
        if source and state.spec.family:
            with contextlib.suppress(ZooError, ImportError):
                estimate = adapter_class(state.spec.family).estimate_bytes(source, self.device)
                if estimate is not None:
                    return estimate
        return 0

    async def _load(self, state: ModelState, reason: str) -> None:
        spec = state.spec
        async with self._load_lock:
            if not spec.enabled:
                raise ModelUnavailable(f"model {spec.name!r} is disabled in the config")
            source = self.source(spec)
            if source is None:
                raise ModelUnavailable(
                    f"model {spec.name!r} is not present on this machine "
                    f"(offline: nothing is downloaded during a request)",
                    {"model_id": spec.model_id, "fetch_with": catalog.pull_command(spec)},
                )
            family = catalog.infer_family(self.config, spec, source)
            if family is None:
                raise ModelLoadFailed(
                    f"cannot tell the family of {spec.name!r}: set models.{spec.name}.family",
                    {"source": Path(source).name},
                )
            spec.family = family
            estimate = self.estimate_bytes(state, source)
            await self._admit(state, estimate)
            started = time.perf_counter()
            footprint = await self._load_with_oom_retry(state, source, estimate)
            seconds = time.perf_counter() - started
            state.footprint, state.measured_bytes = footprint, footprint.bytes
            if footprint.bytes > estimate:  # the estimate was low: restore the budget now
                await self._evict_until_within_budget(state)
        state.load_count += 1
        state.last_load_seconds = seconds
        state.last_error = None
        state.last_used = self.clock()
        state.status = Status.LOADED
        self.events.record(
            Event(
                "load",
                spec.name,
                reason,
                seconds,
                footprint.bytes,
                {
                    "estimate_bytes": estimate,
                    "peak_bytes": footprint.peak_bytes,
                    "rss_delta": footprint.rss_delta,
                    "method": footprint.method,
                },
            )
        )

    async def _load_with_oom_retry(
        self, state: ModelState, source: str, estimate: int
    ) -> LoadFootprint:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                adapter = self.adapter_factory(state.spec, source, self.device)
                footprint = await loop.run_in_executor(
                    self._loader, load_measured, adapter, self.probe
                )
                state.adapter = adapter
                return footprint
            except OOM_ERRORS as exc:
                self._record_failure(state, started, exc)
                if attempt == 2:
                    raise ServiceBusy(
                        f"out of memory loading {state.spec.name!r} after evicting idle models",
                        {"estimate_bytes": estimate},
                        retry_after=30,
                    ) from exc
                for victim in self._eviction_order(exclude=state):
                    if victim.idle:
                        await self._unload(
                            victim, kind="evict", reason=f"OOM loading {state.spec.name}"
                        )
            except ZooError as exc:
                self._record_failure(state, started, exc)
                raise
            except Exception as exc:
                self._record_failure(state, started, exc)
                log.error("loading %s from %s failed", state.spec.name, source, exc_info=exc)
                raise ModelLoadFailed(
                    f"could not load {state.spec.name!r}: {state.last_error}",
                    {"source": Path(source).name},
                ) from exc
        raise AssertionError("unreachable")

    def _record_failure(self, state: ModelState, started: float, exc: BaseException) -> None:
        # Shown to callers (/models/info, errors): server paths become their public names.
        state.last_error = self.public_text(f"{type(exc).__name__}: {exc}")
        self.events.record(
            Event("load_failed", state.spec.name, state.last_error, time.perf_counter() - started)
        )

    # --- admission and eviction --------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes held or claimed: loaded/unloading models, admitted loads, reservations.

        A load still queued for the load lock claims nothing yet: counting it would make the
        load being admitted wait for (and 503 on) a model that is not even loading.
        """
        total = sum(self.reservations.values())
        for state in self.states.values():
            if state.footprint is not None:
                total += state.footprint.bytes
            elif state.status is Status.LOADING:
                total += state.claimed_bytes
        return total

    def _eviction_order(self, exclude: ModelState | None = None) -> list[ModelState]:
        """Idle, unpinned models: expired keep-alive first, then least recently used;
        among equals, the one that is cheaper to reload goes first."""
        now = self.clock()
        candidates = [
            s for s in self.states.values() if s.idle and not s.pinned and s is not exclude
        ]
        return sorted(
            candidates,
            key=lambda s: (
                now - s.last_used < s.keep_alive,  # False (expired) sorts first
                s.last_used,
                s.last_load_seconds or 0.0,
            ),
        )

    async def _evict_until_within_budget(self, state: ModelState) -> None:
        for victim in self._eviction_order(exclude=state):
            if self.used_bytes() <= self.budget_bytes:
                return
            if victim.idle:
                await self._unload(
                    victim, kind="evict", reason=f"{state.spec.name} measured above its estimate"
                )
        if self.used_bytes() > self.budget_bytes:
            self.events.record(
                Event(
                    "over_budget",
                    state.spec.name,
                    "measured size exceeds the estimate and busy models hold the rest",
                    bytes=self.used_bytes() - self.budget_bytes,
                )
            )

    async def _admit(self, state: ModelState, estimate: int) -> None:
        """Make room for `estimate` bytes: evict idle models, wait (bounded) for busy ones."""
        name = state.spec.name
        # Pinned models never leave; busy models and reservations (sessions) do, so those
        # are waited for (503 after the bound) rather than refused outright (507).
        unevictable = sum(
            s.footprint.bytes
            for s in self.states.values()
            if s.footprint and s.pinned and s.status is Status.LOADED
        )
        if estimate > self.budget_bytes - unevictable:
            raise BudgetExceeded(
                f"model {name!r} needs about {estimate / MB:.0f} MB but the budget is "
                f"{self.budget_bytes / MB:.0f} MB ({unevictable / MB:.0f} MB pinned)",
                {
                    "model": name,
                    "estimate_bytes": estimate,
                    "budget_bytes": self.budget_bytes,
                    "pinned_bytes": unevictable,
                },
            )
        await self._make_room(estimate, needed_by=name, exclude=state)
        state.claimed_bytes = estimate

    async def _make_room(self, nbytes: int, needed_by: str, exclude: ModelState | None) -> None:
        """Evict idle models until `nbytes` more fit; wait (bounded) for busy ones, then 503."""
        # Real time, like the waits below: `self.clock` is keep-alive time (injectable).
        deadline = time.monotonic() + self.config.admission_timeout_s
        while True:
            for victim in self._eviction_order(exclude=exclude):
                if self.used_bytes() + nbytes <= self.budget_bytes:
                    break
                if not victim.idle:  # leased while an earlier victim was unloading
                    continue
                await self._unload(victim, kind="evict", reason=f"make room for {needed_by}")
            if self.used_bytes() + nbytes <= self.budget_bytes:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                busy = [s.spec.name for s in self.states.values() if s.refcount > 0]
                busy += sorted(self.reservations)
                raise ServiceBusy(
                    f"no room for {needed_by!r}: models in use hold the budget ({', '.join(busy)})",
                    {
                        "model": needed_by,
                        "busy_models": busy,
                        "used_bytes": self.used_bytes(),
                        "budget_bytes": self.budget_bytes,
                    },
                    retry_after=max(1.0, self.config.admission_timeout_s / 2),
                )
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), timeout=min(remaining, 1.0))

    # --- unloading ---------------------------------------------------------------------------

    async def load(self, name: str, reason: str = "requested") -> dict[str, Any]:
        """Load without leasing (the /models/load endpoint). Idempotent."""
        state = self.state(name)
        if state.status is Status.LOADED:
            return {"model_id": name, "status": "already_loaded", "bytes": state.measured_bytes}
        while state.status is not Status.LOADED:  # an unload in flight ends UNLOADED: load then
            await self._await_transition(state, reason)
        return {
            "model_id": name,
            "status": "loaded",
            "seconds": state.last_load_seconds,
            "bytes": state.measured_bytes,
            "peak_bytes": state.footprint.peak_bytes if state.footprint else None,
        }

    async def unload(self, name: str, reason: str = "requested") -> dict[str, Any]:
        """Unload now. A model in use is refused (409) rather than pulled from under a request."""
        state = self.state(name)
        if state.transition is not None:
            await asyncio.shield(state.transition)
        if state.status is not Status.LOADED:
            return {"model_id": name, "status": "not_loaded"}
        if state.refcount > 0 or state.waiting > 0:  # waiting callers are about to lease it
            users = state.refcount + state.waiting
            raise ModelInUse(
                f"model {name!r} is in use by {users} request(s); retry when they finish",
                {"refcount": state.refcount, "waiting": state.waiting},
                retry_after=1,
            )
        event = await self._unload(state, kind="unload", reason=reason)
        return {"model_id": name, "status": "unloaded", **event.details, "seconds": event.seconds}

    async def _unload(self, state: ModelState, kind: str, reason: str) -> Event:
        """Mark the model UNLOADING now and unload it on the loader thread.

        The unload runs as its own task: a caller that goes away (a cancelled eviction) does
        not leave the model marked unloaded while the loader thread still holds its memory,
        nor the unload without its event.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.transition, state.status = future, Status.UNLOADING
        holder = [state.adapter] if state.adapter is not None else []
        state.adapter = None
        expected = state.footprint.bytes if state.footprint else 0
        task = asyncio.create_task(self._unload_now(state, future, holder, expected, kind, reason))
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)
        return await asyncio.shield(task)

    async def _unload_now(
        self,
        state: ModelState,
        future: asyncio.Future[None],
        holder: list[ModelAdapter],
        expected: int,
        kind: str,
        reason: str,
    ) -> Event:
        started = time.perf_counter()
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(
                self._loader, unload_verified, holder, expected, self.probe
            )
        finally:
            state.status, state.footprint, state.transition = Status.UNLOADED, None, None
            future.set_result(None)
            self._room.set()
        details = {
            "recovered_bytes": outcome.recovered_bytes,
            "expected_bytes": expected,
            "rss_delta": outcome.rss_delta,
            "leaked_modules": outcome.leaked_modules,
            "verified": outcome.verified,
        }
        event = self.events.record(
            Event(
                kind,
                state.spec.name,
                reason,
                time.perf_counter() - started,
                outcome.recovered_bytes,
                details,
            )
        )
        if not outcome.verified:
            self.events.record(
                Event(
                    "unload_incomplete",
                    state.spec.name,
                    "memory did not come back",
                    bytes=expected - outcome.recovered_bytes,
                    details=details,
                )
            )
        return event

    # --- the ledger beyond models -------------------------------------------------------------

    async def reserve(self, key: str, nbytes: int, reason: str) -> None:
        """Count `nbytes` held outside models (a tracking session's memory bank, an external
        engine) against the budget, evicting idle models to make room. Replaces an earlier
        reservation under the same key. Raises BudgetExceeded / ServiceBusy like a load."""
        if self.used_bytes() - self.reservations.get(key, 0) + nbytes <= self.budget_bytes:
            # Fits as it is: no eviction, so no queueing for the load lock, which a load may
            # hold while it waits for the lease of the very request reserving here.
            self.reservations[key] = nbytes
            self.events.record(Event("reserve", key, reason, bytes=nbytes))
            return
        async with self._load_lock:
            previous = self.reservations.pop(key, 0)
            try:
                unevictable = sum(self.reservations.values()) + sum(
                    s.footprint.bytes
                    for s in self.states.values()
                    if s.footprint and (s.pinned or s.refcount > 0)
                )
                if nbytes > self.budget_bytes - unevictable and nbytes > previous:
                    raise BudgetExceeded(
                        f"{key} needs {nbytes / MB:.0f} MB; the budget has "
                        f"{(self.budget_bytes - unevictable) / MB:.0f} MB outside busy models",
                        {"key": key, "bytes": nbytes, "budget_bytes": self.budget_bytes},
                    )
                if nbytes > previous:  # shrinking never needs room
                    await self._make_room(nbytes, needed_by=key, exclude=None)
            except BaseException:  # refused or cancelled: the earlier reservation still holds
                if previous:
                    self.reservations[key] = previous
                raise
            self.reservations[key] = nbytes
        self.events.record(Event("reserve", key, reason, bytes=nbytes))

    def release(self, key: str, reason: str = "released") -> None:
        """Give back a reservation (no-op when absent)."""
        nbytes = self.reservations.pop(key, None)
        if nbytes is not None:
            self.events.record(Event("release", key, reason, bytes=nbytes))
            self._room.set()

    async def reap_expired(self) -> list[str]:
        """Unload idle models whose keep-alive ran out. Returns their names."""
        now = self.clock()
        expired = [
            s
            for s in self.states.values()
            if s.idle and not s.pinned and now - s.last_used >= s.keep_alive
        ]
        reaped = []
        for state in expired:
            # While an earlier one unloaded, this one may have been leased, or used and let go.
            if state.idle and self.clock() - state.last_used >= state.keep_alive:
                await self._unload(state, kind="unload", reason="keep_alive expired")
                reaped.append(state.spec.name)
        return reaped

    async def _reap_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap_expired()
            except Exception:
                log.exception("keep-alive reaper failed")

    # --- reporting ---------------------------------------------------------------------------

    def loaded_models(self) -> list[str]:
        return [n for n, s in self.states.items() if s.status is Status.LOADED]

    def model_info(self, name: str) -> dict[str, Any]:
        state = self.state(name)
        spec = state.spec
        source = self.source(spec)
        expires = None
        if state.status is Status.LOADED and not state.pinned and state.refcount == 0:
            expires = max(0.0, state.keep_alive - (self.clock() - state.last_used))
        info: dict[str, Any] = {
            "status": state.status.value,
            "category": spec.category,
            "family": catalog.infer_family(self.config, spec, source),
            "framework": spec.framework,
            "model_id": self.public_text(spec.model_id),
            "enabled": spec.enabled,
            "available": self.available(name),
            "vram_mb_estimate": spec.vram_mb,
            "memory_mb_measured": None
            if state.measured_bytes is None
            else state.measured_bytes / MB,
            "peak_mb_measured": state.footprint.peak_bytes / MB if state.footprint else None,
            "load_count": state.load_count,
            "last_load_seconds": state.last_load_seconds,
            "in_use": state.refcount,
            "pinned": state.pinned,
            "keep_alive_seconds": state.keep_alive,
            "expires_in_seconds": expires,
            "last_error": state.last_error,
        }
        if source is None and spec.enabled:
            info["fetch_with"] = catalog.pull_command(spec)
        return info
