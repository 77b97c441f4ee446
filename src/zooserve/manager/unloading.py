"""Unloads: a model leaves the device for the host tier (parked) or for disk, in a task of
its own on the loader thread, and the memory coming back is verified."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zooserve.core.errors import ModelInUse
from zooserve.core.events import Event, EventLog
from zooserve.families.base import ModelAdapter
from zooserve.manager.background import Background
from zooserve.manager.claims import Ledger
from zooserve.manager.state import ModelState, Status
from zooserve.manager.tiers import HostTier
from zooserve.runtimes.inference import InferencePool
from zooserve.runtimes.memory import MemoryProbe, unload_verified


@dataclass(eq=False)
class Unloader:
    """Takes models off the device: to the host tier when asked to park, else to disk."""

    probe: MemoryProbe
    ledger: Ledger
    events: EventLog
    host_tier: HostTier
    lanes: InferencePool
    background: Background
    changed: Callable[[], None]  # a claim or a status changed: queued plans may get in

    def start(
        self, state: ModelState, kind: str, reason: str, park: bool = False
    ) -> asyncio.Task[Event]:
        """Mark the model UNLOADING now and unload it on the loader thread (or, with `park`,
        move it to the host tier when it can go there); its claim stays in the ledger until
        the device memory is back."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.transition, state.status = future, Status.UNLOADING
        state.cancel_timer()
        claim = self.ledger.get(state.key)
        if claim is not None:
            claim.reclaiming = True
        holder = [state.adapter] if state.adapter is not None else []
        state.adapter = None
        return self.background.spawn(self._unload(state, future, holder, kind, reason, park))

    async def unload(self, state: ModelState, reason: str) -> dict[str, Any]:
        """Unload now (the /models/unload verb): a loaded model, else a parked one. A model
        in use is refused (409) rather than pulled from under a request."""
        if state.transition is not None:
            await asyncio.shield(state.transition)
        if state.status is not Status.LOADED:
            parked = self.host_tier.take(state.name)
            if parked is None:
                return {"model_id": state.name, "status": "not_loaded"}
            await self.drop(parked)
            self.events.record(Event("unload", state.name, f"{reason} (from host memory)"))
            return {"model_id": state.name, "status": "unloaded", "tier": "host"}
        if state.refcount > 0:
            raise ModelInUse(
                f"model {state.name!r} is in use by {state.refcount} request(s); "
                "retry when they finish",
                {"refcount": state.refcount},
                retry_after=1,
            )
        event = await self.start(state, "unload", reason)
        return {
            "model_id": state.name,
            "status": "unloaded",
            **event.details,
            "seconds": event.seconds,
        }

    async def drop(self, adapter: ModelAdapter) -> None:
        """Drop an adapter that no ledger claim counts any more (a parked model leaving host
        memory for disk, a model measured too big) on the loader thread."""
        await self.background.on_thread(unload_verified, [adapter], 0, self.probe)

    async def drop_parked(self) -> None:
        """Every parked model to disk (shutdown)."""
        for name in self.host_tier.names():
            parked = self.host_tier.take(name)
            if parked is not None:
                await self.drop(parked)

    def _record_park(
        self, state: ModelState, kind: str, reason: str, expected: int, freed: int, started: float
    ) -> Event:
        """What the park itself freed (its storages that left the device), beside the bytes
        expected: a device-wide figure would count other lanes' allocations."""
        details = {
            "tier": "host",
            "recovered_bytes": freed,
            "expected_bytes": expected,
            "verified": True,  # an unverified park became an unload
        }
        return self.events.record(
            Event(kind, state.name, reason, time.perf_counter() - started, freed, details)
        )

    async def _unload(
        self,
        state: ModelState,
        future: asyncio.Future[None],
        holder: list[ModelAdapter],
        kind: str,
        reason: str,
        park: bool = False,
    ) -> Event:
        started = time.perf_counter()
        expected = state.footprint.bytes if state.footprint else 0
        try:
            if park and holder and self.host_tier.can_park(holder[0], expected):
                parked = await self.background.on_thread(
                    self.host_tier.park, state.name, holder[0], expected, self.probe
                )
                for dropped in parked.pushed:  # pushed out of the host tier: to disk
                    await self.drop(dropped)
                if parked.parked:
                    holder.clear()
                    return self._record_park(
                        state, kind, reason, expected, parked.freed_bytes, started
                    )
            outcome = await self.background.on_thread(unload_verified, holder, expected, self.probe)
        finally:
            state.status, state.footprint, state.transition = Status.UNLOADED, None, None
            self.lanes.close_lane(state.name)
            self.ledger.drop(state.key)
            future.set_result(None)
            self.changed()
        details = {
            "recovered_bytes": outcome.recovered_bytes,
            "expected_bytes": expected,
            "rss_delta": outcome.rss_delta,
            "leaked_modules": outcome.leaked_modules,
            "verified": outcome.verified,
        }
        seconds = time.perf_counter() - started
        event = self.events.record(
            Event(kind, state.name, reason, seconds, outcome.recovered_bytes, details)
        )
        if not outcome.verified:
            self.events.record(
                Event(
                    "unload_incomplete",
                    state.name,
                    "memory did not come back",
                    bytes=expected - outcome.recovered_bytes,
                    details=details,
                )
            )
        return event
