"""Unloads: a model leaves the device for the host tier (parked) or for disk, in a task of
its own on the loader thread, and the memory coming back is verified."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from zooserve.events import Event
from zooserve.families.base import ModelAdapter
from zooserve.inference import InferencePool
from zooserve.manager.claims import Ledger
from zooserve.manager.state import ModelState, Status
from zooserve.manager.tiers import HostTier
from zooserve.memory import MemoryProbe, unload_verified

if TYPE_CHECKING:
    from zooserve.events import EventLog


class Unloading:
    """Mixin of ModelManager: unloading and parking models."""

    probe: MemoryProbe
    ledger: Ledger
    events: EventLog
    host: HostTier
    _loader: ThreadPoolExecutor
    _inference: InferencePool
    _tasks: set[asyncio.Task[Any]]

    if TYPE_CHECKING:  # provided by the other parts of ModelManager

        def _dispatch(self) -> None: ...

    def _start_unload(
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
        task = asyncio.create_task(self._unload_now(state, future, holder, kind, reason, park))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _unload_adapter(self, adapter: ModelAdapter) -> None:
        """Drop an adapter that no ledger claim counts any more (a parked model leaving host
        memory for disk, a model measured too big) on the loader thread."""
        await asyncio.get_running_loop().run_in_executor(
            self._loader, unload_verified, [adapter], 0, self.probe
        )

    def _record_park(
        self, state: ModelState, kind: str, reason: str, nbytes: int, started: float
    ) -> Event:
        details = {"tier": "host", "recovered_bytes": nbytes, "verified": True}
        return self.events.record(
            Event(kind, state.name, reason, time.perf_counter() - started, nbytes, details)
        )

    async def _unload_now(
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
        loop = asyncio.get_running_loop()
        try:
            if park and holder and self.host.can_park(holder[0], expected):
                parked, pushed = await loop.run_in_executor(
                    self._loader, self.host.park, state.name, holder[0], expected, self.probe
                )
                for dropped in pushed:  # pushed out of the host tier: to disk
                    await self._unload_adapter(dropped)
                if parked:
                    holder.clear()
                    return self._record_park(state, kind, reason, expected, started)
            outcome = await loop.run_in_executor(
                self._loader, unload_verified, holder, expected, self.probe
            )
        finally:
            state.status, state.footprint, state.transition = Status.UNLOADED, None, None
            self._inference.close_lane(state.name)
            self.ledger.drop(state.key)
            future.set_result(None)
            self._dispatch()
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
                state.name,
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
                    state.name,
                    "memory did not come back",
                    bytes=expected - outcome.recovered_bytes,
                    details=details,
                )
            )
        return event
