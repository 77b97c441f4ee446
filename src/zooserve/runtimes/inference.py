"""The inference pool: blocking model calls off the event loop, each with a deadline.

Native code (OpenCV, ONNX Runtime, FFmpeg, torch kernels) cannot be interrupted from Python. A
call that runs past its deadline is therefore abandoned, not killed: its caller gets a 503
`inference_failed`, its lane's threads are replaced so later requests do not queue behind it,
and `on_stuck` lets the manager keep the model leased until the stuck thread really ends (so it
is never unloaded under that thread). A call that raises anything but a domain error is a crash
of the model, answered 503 `inference_failed` with the reason; the traceback goes to the log.
Segfaults are prevented by checking inputs before native code (see media.py and the families'
`min_input_size`), not contained: run the service under a supervisor that restarts it.

All models share one device, so the loader measures a model's memory in a quiet window
(`InferencePool.quiet`): no other model's call runs meanwhile to pollute the allocator's figures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import anyio

from zooserve.core import request_context
from zooserve.core.errors import InferenceFailed, ZooError
from zooserve.runtimes.quiet import QuietGate, QuietWindow

T = TypeVar("T")
log = logging.getLogger("zooserve.runtimes.inference")

#: Longest a quiet window waits for calls in flight by default: a memory figure marked noisy
#: costs less than holding a load (and every request queued behind it) for a slow call.
QUIET_WAIT_S = 10.0


class Lane:
    """The threads one model's calls run on (`options.concurrency` of them), so models run
    side by side instead of queueing for one thread; replaced when a call is stuck."""

    def __init__(self, name: str, workers: int) -> None:
        self.name, self.workers = name, max(1, workers)
        self.replaced = 0
        self.pool = self._new_pool()

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.workers, thread_name_prefix=f"zooserve-infer-{self.name}")

    def abandon(self, pool: ThreadPoolExecutor, fn: Callable[..., Any]) -> None:
        """Swap in fresh threads; the stuck one finishes (or not) on its own."""
        if self.pool is pool:
            self.pool = self._new_pool()
            self.replaced += 1
            pool.shutdown(wait=False)
            log.error("inference in %s is stuck: lane %s replaced", _name(fn), self.name)

    def close(self) -> None:
        self.pool.shutdown(wait=False)  # calls still running end on their own


class InferencePool:
    """Lanes of threads for inference: one per loaded model plus a shared one."""

    def __init__(
        self, workers: int, timeout_s: float, quiet_timeout_s: float | None = None
    ) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self.quiet_timeout_s = (
            min(timeout_s, QUIET_WAIT_S) if quiet_timeout_s is None else quiet_timeout_s
        )
        self._gate = QuietGate()
        self.shared = Lane("shared", workers)
        self.lanes: dict[str, Lane] = {}
        self._closed_replaced = 0

    @property
    def replaced(self) -> int:
        """How many times stuck threads were abandoned, in every lane."""
        lanes = [self.shared, *self.lanes.values()]
        return self._closed_replaced + sum(lane.replaced for lane in lanes)

    def open_lane(self, name: str, workers: int) -> Lane:
        self.close_lane(name)
        lane = self.lanes[name] = Lane(name, workers)
        return lane

    def close_lane(self, name: str) -> None:
        lane = self.lanes.pop(name, None)
        if lane is not None:
            self._closed_replaced += lane.replaced
            lane.close()

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_stuck: Callable[[asyncio.Future[Any]], None] | None = None,
        lane: Lane | None = None,
    ) -> T:
        """`fn(*args)` in a pool thread, at most `timeout_s` seconds.

        A caller cancelled meanwhile (a cancelled job, a dropped stream) still waits for the
        thread to end before going on: the thread uses the caller's leased model. While a quiet
        window is open the call waits (bounded) before starting; the deadline counts from then.
        A call for an HTTP request whose client has left is not started (MediaClosed): every
        pipeline stops between its batches, however it loops.
        """
        await request_context.stop_if_client_left(f"inference in {_name(fn)}")
        token = await self._gate.enter(max_wait_s=self.timeout_s)
        lane = lane or self.shared
        pool = lane.pool
        try:
            submitted = pool.submit(fn, *args)
        except BaseException:
            self._gate.leave(token)
            raise
        submitted.add_done_callback(lambda _: self._gate.leave(token))
        future = asyncio.wrap_future(submitted, loop=asyncio.get_running_loop())
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            self._gate.mark_stuck(token)
            lane.abandon(pool, fn)
            if on_stuck is not None:
                on_stuck(future)
            future.add_done_callback(retrieve_outcome)
            raise InferenceFailed(
                f"inference in {_name(fn)} ran longer than {self.timeout_s:g} s "
                "(inference_timeout_s); it was abandoned and its lane replaced",
                {"timeout_s": self.timeout_s},
                retry_after=1.0,
            ) from None
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):  # Starlette cancels a dropped stream via anyio
                await asyncio.wait([future])
            raise
        except ZooError:
            raise
        except Exception as exc:
            log.exception("inference in %s failed", _name(fn))
            raise InferenceFailed(
                f"inference in {_name(fn)} failed: {type(exc).__name__}: {exc}"[:500],
                {"exception": type(exc).__name__},
                retry_after=1.0,
            ) from exc

    def quiet(self, timeout_s: float | None = None) -> AbstractContextManager[QuietWindow]:
        """Pause inference for a measurement (enter from a thread, never the event loop).

        Waits at most `timeout_s` (default `quiet_timeout_s`) for the calls in flight and holds
        new calls until the block exits (each at most `timeout_s` of the pool, the deadline).
        The window yielded says whether it stayed calm: no other call ran in it.
        """
        return self._gate.quiet(self.quiet_timeout_s if timeout_s is None else timeout_s)

    @property
    def quiet_requested(self) -> bool:
        """A quiet window is open or waiting for calls to end."""
        return self._gate.quiet_requested

    @property
    def held(self) -> int:
        """Calls waiting for a quiet window to end before they start."""
        return self._gate.held

    def shutdown(self, wait: bool = True) -> None:
        for lane in [self.shared, *self.lanes.values()]:
            lane.pool.shutdown(wait=wait)


def _name(fn: Callable[..., Any]) -> str:
    owner = getattr(fn, "__self__", None)
    return f"{type(owner).__name__}.{fn.__name__}" if owner is not None else fn.__name__


def retrieve_outcome(future: asyncio.Future[Any]) -> None:
    """Done-callback for work nobody will await (an abandoned call, an unused read-ahead):
    collect its error so asyncio does not report it as never retrieved."""
    if not future.cancelled():
        future.exception()
