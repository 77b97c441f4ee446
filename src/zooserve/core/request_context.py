"""Per-request settings the API layer sets and the manager reads, without threading them
through every pipeline: context variables follow the request into its tasks and jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from zooserve.core.errors import MediaClosed

#: The request's `keep_alive` in seconds (Ollama's meaning: 0 unloads the model once the
#: request ends, negative pins it); None keeps the model's configured keep-alive.
keep_alive: ContextVar[float | None] = ContextVar("zooserve_keep_alive", default=None)

#: Whether the request's client has gone away (a queued request then leaves the queue);
#: None outside HTTP requests (CLI, jobs after their request ended).
client_gone: ContextVar[Callable[[], Awaitable[bool]] | None] = ContextVar(
    "zooserve_client_gone", default=None
)


async def client_left() -> bool:
    """Whether this request's client has disconnected (never outside an HTTP request: a job
    runs to its end whether or not anyone still waits on the request that submitted it)."""
    gone = client_gone.get()
    return gone is not None and await gone()


async def stop_if_client_left(work: str) -> None:
    """Raise MediaClosed (499) before `work` starts when nobody waits for its result: a
    dropped 80-frame request stops at its next batch instead of running to the end."""
    if await client_left():
        raise MediaClosed(f"the client went away before {work}")
