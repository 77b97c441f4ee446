"""The manager's event log: every load, unload, eviction and failure, with reason, time, bytes."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("zooserve.core.events")


@dataclass(frozen=True)
class Event:
    # load | load_failed | unload | evict | unload_incomplete | over_budget | reserve | release
    kind: str
    model: str
    reason: str
    seconds: float | None = None
    bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EventLog:
    """Bounded in-memory history; each event is also logged (warnings for failures)."""

    def __init__(self, maxlen: int = 1000) -> None:
        self._events: deque[Event] = deque(maxlen=maxlen)
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call `callback(event)` for every later event (metrics, the dashboard's live feed)."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Event], None]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def record(self, event: Event) -> Event:
        self._events.append(event)
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed")
        level = (
            logging.WARNING if event.kind in {"load_failed", "unload_incomplete"} else logging.INFO
        )
        log.log(
            level,
            "%s %s (%s) seconds=%s bytes=%s",
            event.kind,
            event.model,
            event.reason,
            event.seconds,
            event.bytes,
            extra={"event": event.to_dict()},
        )
        return event

    def recent(self, limit: int = 100, model: str | None = None) -> list[Event]:
        events = [e for e in self._events if model is None or e.model == model]
        return events[-limit:] if limit > 0 else []

    def count(self, kind: str, model: str | None = None) -> int:
        return sum(
            1 for e in self._events if e.kind == kind and (model is None or e.model == model)
        )
