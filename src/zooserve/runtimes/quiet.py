"""The quiet window: inference paused while the loader measures a model on the shared device
(see InferencePool.quiet)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

log = logging.getLogger("zooserve.runtimes.inference")


@dataclass
class QuietWindow:
    """What a quiet window saw: `calm` is False if a call of another model ran in it."""

    calm: bool = True


class QuietGate:
    """Pauses inference while the loader measures a model on the shared device.

    A call passes `enter` (awaited on the event loop, so a held call blocks no thread) before
    its thread starts and `leave`s when its thread ends. `quiet` waits, at most `timeout_s`, for
    the calls in flight to end and holds new ones at the gate until it exits. Neither side can
    freeze the other: a call abandoned at its deadline (`mark_stuck`) may never end, so it is
    not waited for; a held call goes on after `max_wait_s` (a warm-up hung in native code must
    not stop all inference). Either makes the window noisy (`calm` False).
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._running: set[object] = set()  # admitted calls whose threads have not ended
        self._stuck: set[object] = set()  # abandoned calls whose threads have not ended
        self._windows: list[QuietWindow] = []  # open (entered from the loader thread)
        self._held: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def quiet_requested(self) -> bool:
        return bool(self._windows)

    @property
    def held(self) -> int:
        """Calls waiting at the gate for a quiet window to end."""
        return len(self._held)

    async def enter(self, max_wait_s: float) -> object:
        """Wait (at most `max_wait_s`) while a quiet window is open; pass the token to `leave`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        while True:
            with self._lock:
                if not self._windows or loop.time() >= deadline:
                    for window in self._windows:
                        window.calm = False
                    token = object()
                    self._running.add(token)
                    return token
                opened: asyncio.Future[None] = loop.create_future()
                self._held.append((loop, opened))
            try:
                await asyncio.wait([opened], timeout=deadline - loop.time())
            finally:
                with self._lock:
                    if (loop, opened) in self._held:
                        self._held.remove((loop, opened))

    def leave(self, token: object) -> None:
        with self._lock:
            self._running.discard(token)
            self._stuck.discard(token)
            self._lock.notify_all()

    def mark_stuck(self, token: object) -> None:
        with self._lock:
            if token in self._running:
                self._running.discard(token)
                self._stuck.add(token)
                self._lock.notify_all()

    @contextmanager
    def quiet(self, timeout_s: float) -> Iterator[QuietWindow]:
        """Hold new calls and wait (bounded) for running ones; see `QuietWindow.calm`."""
        window = QuietWindow()
        with self._lock:
            self._windows.append(window)
            try:
                settled = self._lock.wait_for(lambda: not self._running, timeout_s)
            except BaseException:
                self._close(window)
                raise
            window.calm = settled and not self._stuck
            running, stuck = len(self._running), len(self._stuck)
        if not window.calm:
            log.warning(
                "quiet window: %d inference call(s) still running after %g s (%d abandoned at "
                "their deadline); going on without a quiet device",
                running + stuck,
                timeout_s,
                stuck,
            )
        try:
            yield window
        finally:
            with self._lock:
                self._close(window)

    def _close(self, window: QuietWindow) -> None:
        """Close one quiet window (lock held); the last one lets the held calls go."""
        self._windows.remove(window)
        if self._windows:
            return
        held, self._held = self._held, []
        for loop, opened in held:
            with suppress(RuntimeError):  # that loop is closed: nobody waits there any more
                loop.call_soon_threadsafe(_release, opened)


def _release(opened: asyncio.Future[None]) -> None:
    if not opened.done():
        opened.set_result(None)
