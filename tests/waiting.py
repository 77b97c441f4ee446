"""Waiting in tests for something another thread or task does: a bounded loop, not a timing
assertion (the bound only turns a hang into a clear failure)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop (and worker threads) run until `condition()` holds."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")
