"""The live view of each engine: what the last probe or request said, and when.

Probes (GET /health, else /v1/models) run on a timer; real requests update the view too, so an
engine that just refused a connection is skipped by the next request instead of timing it out
again. A skipped engine is named in the 503 with the reason it was skipped.

What the view shows is redacted (zooserve.core.redaction): engine argv, environments, URLs and error
text carry API keys and tokens, and the view reaches /health, /models/info and 503 details.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from zooserve.core.redaction import redact_text

State = Literal["unknown", "up", "down"]


@dataclass
class EngineHealth:
    """Mutable health record of one engine (owned by the pool, changed on the event loop only)."""

    state: State = "unknown"
    detail: str = ""
    checked_at: float | None = None  # clock() of the last observation
    checked_wall: float | None = None  # time.time() of the same, for reports
    latency_s: float | None = None
    consecutive_failures: int = 0
    requests: int = 0
    failures: int = 0

    def mark_up(self, now: float, detail: str, latency_s: float | None = None) -> None:
        self.state, self.detail = "up", detail
        self.checked_at, self.checked_wall = now, time.time()
        self.latency_s = latency_s
        self.consecutive_failures = 0

    def mark_down(self, now: float, reason: str) -> None:
        self.state, self.detail = "down", reason
        self.checked_at, self.checked_wall = now, time.time()
        self.consecutive_failures += 1

    def known_down(self, now: float, window_s: float) -> bool:
        """Down, and observed so within `window_s` (older news is re-checked by trying)."""
        return (
            self.state == "down"
            and self.checked_at is not None
            and now - self.checked_at < window_s
        )

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": redact_text(self.detail),
            "checked_seconds_ago": None
            if self.checked_at is None
            else round(max(0.0, now - self.checked_at), 3),
            "checked_at": self.checked_wall,
            "latency_s": self.latency_s,
            "consecutive_failures": self.consecutive_failures,
            "requests": self.requests,
            "failures": self.failures,
        }
