"""Inference on a leased model: its lane, batching across requests, keeping a model leased
while a call that overran its deadline still runs, and one retry of a call that ran out of
device memory (cache released, idle models evicted)."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np

from zooserve.core.errors import InferenceFailed
from zooserve.core.events import Event, EventLog
from zooserve.manager.batching import Batcher, batch_key
from zooserve.manager.leases import Leases
from zooserve.manager.loader import OOM_ERRORS
from zooserve.manager.state import ModelState
from zooserve.runtimes.inference import InferencePool, Lane
from zooserve.runtimes.memory import MemoryProbe

T = TypeVar("T")
#: Evicts every idle model but those under the keys given, and waits (`Loader.evict_idle`).
MakeRoom = Callable[[str, set[str]], Awaitable[None]]


class Lanes:
    """Inference on leased models: the pool of per-model lanes and the batcher."""

    def __init__(
        self,
        pool: InferencePool,
        states: dict[str, ModelState],
        leases: Leases,
        events: EventLog,
        *,
        probe: MemoryProbe | None = None,
        make_room: MakeRoom | None = None,
    ) -> None:
        self.pool = pool
        self.batcher = Batcher()
        self.states = states
        self.leases = leases
        self.events = events
        self.probe = probe
        self.make_room = make_room

    async def infer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking inference on the lane of the model it uses (never on the event loop or
        the loader), with the `inference_timeout_s` deadline (see zooserve.runtimes.inference).

        A call that runs out of memory (a CUDA OOM: other models' activations, the allocator's
        fragments) is retried once after the cache is released and the idle models other
        than its own are evicted; a second OOM is answered 503 `inference_failed` as before.
        """
        used = self._models_used(fn, args)
        lane = self.pool.lanes.get(used[0].name) if used else None
        try:
            return await self._run(fn, args, used, lane)
        except InferenceFailed as failed:
            if not isinstance(failed.__cause__, OOM_ERRORS):
                raise
            _drop_frames(failed)  # the failed call's activations must not outlive it
        await self._free_memory(fn, used)
        try:
            return await self._run(fn, args, used, lane)
        except InferenceFailed as failed:
            if isinstance(failed.__cause__, OOM_ERRORS):
                failed.details["retried_after_freeing_memory"] = True
            raise

    async def _run(
        self, fn: Callable[..., T], args: tuple[Any, ...], used: list[ModelState], lane: Lane | None
    ) -> T:
        return await self.pool.run(fn, *args, on_stuck=lambda f: self._hold(used, f), lane=lane)

    async def _free_memory(self, fn: Callable[..., Any], used: list[ModelState]) -> None:
        """Release the allocator's cache, then evict the idle models this call does not use."""
        names = ", ".join(state.name for state in used) or getattr(fn, "__name__", "a call")
        self.events.record(
            Event("inference_oom", names, "out of memory: cache released, idle models evicted")
        )
        if self.probe is not None:
            await asyncio.to_thread(self.probe.release_cache)
        if self.make_room is not None:
            await self.make_room(f"{names} (out of memory)", {state.key for state in used})

    async def infer_batched(
        self, fn: Callable[..., list[T]], items: list[Any], *params: Any
    ) -> list[T]:
        """`fn(items, *params)`, one result per item, batched with concurrent calls to the same
        model with the same params (see zooserve.manager.batching) up to the model's
        `options.max_batch_size` items (default its `batch_size`, 4)."""
        used = self._models_used(fn, ())
        options = used[0].spec.options if used else {}
        size = int(options.get("max_batch_size", options.get("batch_size", 4)))
        shapes = [tuple(np.shape(item)) for item in items]
        key = batch_key(getattr(fn, "__self__", fn), fn.__name__, *params, shapes=shapes)
        if key is None or not items or len(items) >= size:
            return await self.infer(fn, items, *params)
        wait_s = float(options.get("max_batch_wait_ms", 0)) / 1000

        async def run(batch: list[Any]) -> list[T]:
            return await self.infer(fn, batch, *params)

        return await self.batcher.submit(key, items, run, size, wait_s)

    def _models_used(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> list[ModelState]:
        """The loaded models a call uses: its method's owner first, then its arguments."""
        used = [id(getattr(fn, "__self__", None)), *(id(a) for a in args)]
        by_adapter = {id(s.adapter): s for s in self.states.values() if s.adapter is not None}
        return list({id(by_adapter[i]): by_adapter[i] for i in used if i in by_adapter}.values())

    def _hold(self, used: list[ModelState], running: Any) -> None:
        """Keep the models a stuck call uses leased until its thread really ends."""
        for state in used:
            if state.adapter is not None:
                self.leases.lease(state)
                self.events.record(Event("inference_stuck", state.name, "inference timed out"))
                running.add_done_callback(lambda _, state=state: self.leases.end(state))


def _drop_frames(failed: BaseException) -> None:
    """Clear the locals of the frames under an exception's cause (a finished call's: its
    tensors), which its traceback keeps alive however long the exception is kept (a log
    handler's record), so the cache can give their memory back."""
    cause = failed.__cause__
    if cause is not None and cause.__traceback__ is not None:
        traceback.clear_frames(cause.__traceback__)
