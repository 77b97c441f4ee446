"""The loader thread and the tasks that outlive their callers.

Loads, unloads and parks run on one thread, one at a time (the loader thread), each inside a
task of its own: a caller that goes away never leaves a model half-loaded. The tasks are held
here (asyncio keeps only weak references) so shutdown can wait for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Background:
    """The loader thread and strong references to the transition tasks."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="zooserve-loader")
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` in a task that lives until it ends, whoever awaits it."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the loader thread (after the work queued there before it)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def settle(self) -> None:
        """Wait for the tasks running now (not for those they start)."""
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def shutdown(self) -> None:
        self._thread.shutdown(wait=True)
