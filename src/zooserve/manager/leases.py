"""Leases and keep-alive: a leased model is never evicted; when its last lease ends, one timer
unloads it once its keep-alive runs out (a pinned model stays)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from zooserve.catalog import Config
from zooserve.core import request_context
from zooserve.manager.claims import Ledger, Reclaim
from zooserve.manager.scheduler import Scheduler
from zooserve.manager.state import ModelState
from zooserve.manager.unloading import Unloader


@dataclass(eq=False)
class Leases:
    """Reference counts of the models in use, and their keep-alive timers."""

    config: Config
    ledger: Ledger
    unloader: Unloader
    scheduler: Scheduler
    clock: Callable[[], float]  # keep-alive time (injectable); waits use real time

    def lease(self, state: ModelState) -> None:
        state.refcount += 1
        state.last_used = self.clock()
        state.cancel_timer()

    def end(self, state: ModelState) -> None:
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
            self.arm_keep_alive(state)
        self.scheduler.dispatch()

    def arm_keep_alive(self, state: ModelState) -> None:
        """One timer per idle model: it unloads the model when its keep-alive runs out."""
        state.cancel_timer()
        if not state.idle or state.pinned:
            return
        if state.keep_alive == 0:
            self.unloader.start(state, "unload", "keep_alive 0: unload after the request")
            return
        loop = asyncio.get_running_loop()
        state.timer = loop.call_later(state.keep_alive, self._expire, state)

    def _expire(self, state: ModelState) -> None:
        state.timer = None
        if self.expired(state):
            self.unloader.start(state, "unload", "keep_alive expired", park=True)

    def expired(self, state: ModelState) -> bool:
        """Idle, not pinned, and unused for its keep-alive by `clock` now."""
        return (
            state.idle and not state.pinned and self.clock() - state.last_used >= state.keep_alive
        )

    async def reap_expired(self, states: list[ModelState]) -> list[str]:
        """Unload those of `states` whose keep-alive ran out by `clock` now (the timers do this
        as time passes; this is for an injected clock and for operators). Returns their names."""
        reaped = []
        for state in states:
            # While an earlier one unloaded, this one may have been leased, or used and let go.
            if self.expired(state):
                await self.unloader.start(state, "unload", "keep_alive expired", park=True)
                reaped.append(state.name)
        return reaped
