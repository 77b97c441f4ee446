"""Dynamic batching across requests: frames that concurrent requests send to the same model
with the same parameters are run as one forward pass and split back per request.

As Triton's dynamic batcher and LitServe do, but adaptive first: a batch starts as soon as
the model's lane is free, taking whatever queued meanwhile (up to `max_batch_size` frames),
so a lone request never waits; `max_batch_wait_ms` optionally holds a batch open longer to
fill it. Only compatible work is batched: the same model, prompts and threshold, and frames
of one shape (a processor pads a batch to its largest frame; equal shapes keep each
request's results those it would get alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from zooserve.core import request_context

#: Runs one batch: items in, one result per item out.
BatchRunner = Callable[[list[Any]], Awaitable[Sequence[Any]]]


@dataclass(eq=False)
class _Request:
    items: list[Any]
    future: asyncio.Future[list[Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    batch: asyncio.Future[None] | None = None  # set once taken into a running batch


class Batcher:
    """One queue per compatible key; a worker per key while work is queued."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, list[_Request]] = {}
        self._workers: dict[Hashable, asyncio.Task[None]] = {}
        self.batches = 0  # forward passes run
        self.items = 0  # items they carried

    async def submit(
        self,
        key: Hashable,
        items: Sequence[Any],
        run: BatchRunner,
        max_batch_size: int,
        max_wait_s: float = 0.0,
    ) -> list[Any]:
        """Queue `items` under `key`; returns their results, in order, once their batch ran.

        A caller cancelled while its items run still waits for the batch (the model is leased
        by the callers, and one of them is this one); one cancelled while queued just leaves.
        One whose HTTP client already left is refused (MediaClosed) before it queues.
        """
        await request_context.stop_if_client_left("its frames were queued for a batch")
        request = _Request(list(items))
        self._queues.setdefault(key, []).append(request)
        if key not in self._workers:
            # The worker serves every request that queues under `key`, not the one that
            # started it: it must not see that request's client leave (InferencePool.run).
            shared = contextvars.copy_context()
            shared.run(request_context.client_gone.set, None)
            worker = asyncio.create_task(
                self._work(key, run, max_batch_size, max_wait_s), context=shared
            )
            self._workers[key] = worker
        try:
            return await asyncio.shield(request.future)
        except asyncio.CancelledError:
            queue = self._queues.get(key, [])
            if request in queue:
                queue.remove(request)
            elif request.batch is not None:
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([request.batch])
            raise

    async def _work(
        self, key: Hashable, run: BatchRunner, max_batch_size: int, max_wait_s: float
    ) -> None:
        queue = self._queues[key]
        try:
            while queue:
                if max_wait_s > 0 and _size(queue) < max_batch_size:
                    await asyncio.sleep(max_wait_s)  # let a batch fill (off by default)
                taken = _take(queue, max_batch_size)
                if not taken:
                    continue
                await self._run(taken, run)
        finally:
            self._workers.pop(key, None)
            if not queue:
                self._queues.pop(key, None)

    async def _run(self, taken: list[_Request], run: BatchRunner) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for request in taken:
            request.batch = done
        items = [item for request in taken for item in request.items]
        try:
            results = list(await run(items))
            if len(results) != len(items):
                raise RuntimeError(f"a batch of {len(items)} gave {len(results)} results")
        except BaseException as exc:
            for request in taken:
                if not request.future.done():
                    request.future.set_exception(exc)
                    request.future.exception()  # retrieved: its caller may be gone
            if not isinstance(exc, Exception):
                raise
        else:
            self.batches += 1
            self.items += len(items)
            start = 0
            for request in taken:
                count = len(request.items)
                if not request.future.done():
                    request.future.set_result(results[start : start + count])
                start += count
        finally:
            done.set_result(None)


def _size(queue: list[_Request]) -> int:
    return sum(len(r.items) for r in queue)


def _take(queue: list[_Request], max_items: int) -> list[_Request]:
    """Requests from the front while they fit in `max_items` (the first always goes)."""
    taken: list[_Request] = []
    total = 0
    while queue and (not taken or total + len(queue[0].items) <= max_items):
        request = queue.pop(0)
        if request.future.done():
            continue
        taken.append(request)
        total += len(request.items)
    return taken


def batch_key(owner: object, *params: Any, shapes: Sequence[tuple[int, ...]]) -> Hashable | None:
    """The key compatible work shares, or None when these items must run alone (frames of
    different shapes in one request)."""
    if len(set(shapes)) > 1:
        return None
    with contextlib.suppress(TypeError):
        frozen = tuple(tuple(p) if isinstance(p, list) else p for p in params)
        hash(frozen)
        return (id(owner), frozen, shapes[0] if shapes else None)
    return None
