"""The inference pool: blocking model calls off the event loop, each with a deadline.

Native code (OpenCV, ONNX Runtime, FFmpeg, torch kernels) cannot be interrupted from Python. A
call that runs past its deadline is therefore abandoned, not killed: its caller gets a 503
`inference_failed`, the pool's threads are replaced so later requests do not queue behind it,
and `on_stuck` lets the manager keep the model leased until the stuck thread really ends (so it
is never unloaded under that thread). A call that raises anything but a domain error is a crash
of the model, answered 503 `inference_failed` with the reason; the traceback goes to the log.
Segfaults are prevented by checking inputs before native code (see media.py and the families'
`min_input_size`), not contained: run the service under a supervisor that restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio

from zooserve.errors import InferenceFailed, ZooError

T = TypeVar("T")
log = logging.getLogger("zooserve.inference")


class InferencePool:
    """Threads for inference; replaced as a whole when a call overruns its deadline."""

    def __init__(self, workers: int, timeout_s: float) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self.replaced = 0  # how many times stuck threads were abandoned
        self._pool = self._new_pool()

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.workers, thread_name_prefix="zooserve-infer")

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_stuck: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> T:
        """`fn(*args)` in a pool thread, at most `timeout_s` seconds.

        A caller cancelled meanwhile (a cancelled job, a dropped stream) still waits for the
        thread to end before going on: the thread uses the caller's leased model.
        """
        pool = self._pool
        future = asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            self._abandon(pool, fn)
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

    def _abandon(self, pool: ThreadPoolExecutor, fn: Callable[..., Any]) -> None:
        """Swap in fresh threads; the stuck one finishes (or not) on its own."""
        if self._pool is pool:
            self._pool = self._new_pool()
            self.replaced += 1
            pool.shutdown(wait=False)
            log.error(
                "inference in %s is stuck: lane replaced (%d so far)", _name(fn), self.replaced
            )

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


def _name(fn: Callable[..., Any]) -> str:
    owner = getattr(fn, "__self__", None)
    return f"{type(owner).__name__}.{fn.__name__}" if owner is not None else fn.__name__


def retrieve_outcome(future: asyncio.Future[Any]) -> None:
    """Done-callback for work nobody will await (an abandoned call, an unused read-ahead):
    collect its error so asyncio does not report it as never retrieved."""
    if not future.cancelled():
        future.exception()
