"""Per-request settings the API layer sets and the manager reads, without threading them
through every pipeline: context variables follow the request into its tasks and jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar

#: The request's `keep_alive` in seconds (Ollama's meaning: 0 unloads the model once the
#: request ends, negative pins it); None keeps the model's configured keep-alive.
keep_alive: ContextVar[float | None] = ContextVar("zooserve_keep_alive", default=None)

#: Whether the request's client has gone away (a queued request then leaves the queue);
#: None outside HTTP requests (CLI, jobs after their request ended).
client_gone: ContextVar[Callable[[], Awaitable[bool]] | None] = ContextVar(
    "zooserve_client_gone", default=None
)
