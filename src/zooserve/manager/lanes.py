"""Inference on a leased model: its lane, batching across requests, and keeping a
model leased while a call that overran its deadline still runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from zooserve.core.events import Event, EventLog
from zooserve.manager.batching import Batcher, batch_key
from zooserve.manager.leases import Leases
from zooserve.manager.state import ModelState
from zooserve.runtimes.inference import InferencePool

T = TypeVar("T")


class Lanes:
    """Inference on leased models: the pool of per-model lanes and the batcher."""

    def __init__(
        self, pool: InferencePool, states: dict[str, ModelState], leases: Leases, events: EventLog
    ) -> None:
        self.pool = pool
        self.batcher = Batcher()
        self.states = states
        self.leases = leases
        self.events = events

    async def infer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking inference on the lane of the model it uses (never on the event loop or
        the loader), with the `inference_timeout_s` deadline (see zooserve.runtimes.inference)."""
        used = self._models_used(fn, args)
        lane = self.pool.lanes.get(used[0].name) if used else None
        return await self.pool.run(fn, *args, on_stuck=lambda f: self._hold(used, f), lane=lane)

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
