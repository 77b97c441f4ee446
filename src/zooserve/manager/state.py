"""One model's state in the manager (see DESIGN.md, "The manager's states")."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from zooserve.catalog import ModelSpec
from zooserve.families.base import UNKNOWN_SIZE_BYTES, ModelAdapter
from zooserve.manager.claims import model_key
from zooserve.runtimes.memory import LoadFootprint, admission_bytes


class Status(enum.StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"


@dataclass
class ModelState:
    spec: ModelSpec
    keep_alive: float
    status: Status = Status.UNLOADED
    adapter: ModelAdapter | None = None
    #: Leases: requests using it, or admitted and waiting for its load. Never evicted while > 0.
    refcount: int = 0
    source: str | None = None  # where its weights are (checked before each admission)
    estimate: int | None = None  # its size before measuring (see lookup.prepare)
    footprint: LoadFootprint | None = None
    measured_bytes: int | None = None  # kept across unloads: the next admission uses them
    measured_peak_bytes: int | None = None
    #: `expected_bytes` when its load was admitted: the loader claims more before loading
    #: only if a relative's measure raised it since.
    expected_at_admission: int = 0
    load_count: int = 0  # from disk
    last_load_seconds: float | None = None
    wake_count: int = 0  # from the host tier
    last_wake_seconds: float | None = None
    last_used: float = 0.0
    last_error: str | None = None
    transition: asyncio.Future[None] | None = None
    timer: asyncio.TimerHandle | None = None  # keep-alive

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str:
        """Its claim's key in the ledger."""
        return model_key(self.spec.name)

    def cancel_timer(self) -> None:
        """Stop its keep-alive timer (it is leased, unloading, or re-armed)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    @property
    def pinned(self) -> bool:
        return self.keep_alive < 0

    @property
    def idle(self) -> bool:
        return self.status is Status.LOADED and self.refcount == 0

    @property
    def admission_bytes(self) -> int:
        """What a load is admitted by: the largest of the estimate (from `prepare`), the
        measured size and the measured peak (weights + warm-up activations)."""
        estimate = UNKNOWN_SIZE_BYTES if self.estimate is None else self.estimate
        return admission_bytes(estimate, self.measured_bytes, self.measured_peak_bytes)


def expected_bytes(state: ModelState, states: Iterable[ModelState]) -> int:
    """What `state` is expected to hold once loaded: its `admission_bytes`, and for a model
    never measured, times its family's worst under-estimate so far (issue #18 item 5: a load's
    memory exists before it can be measured, so with estimates eight times too low the next
    model of the family is admitted by its real size, not beside memory it will need)."""
    if state.measured_bytes is not None:
        return state.admission_bytes
    ratio = 1.0
    for other in states:
        if other is not state and other.spec.family == state.spec.family and other.estimate:
            measured = max(other.measured_bytes or 0, other.measured_peak_bytes or 0)
            ratio = max(ratio, measured / other.estimate)
    return int(state.admission_bytes * ratio)
