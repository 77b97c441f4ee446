"""Tracking sessions in the memory ledger: reserve, grow, release, and expire when idle.

A session's memory (a SAM2 memory bank, ByteTrack's tracklets) is held outside any model, so
it is reserved in the manager's ledger under `tracking:<id>` and kept in step with
`Tracker.session_bytes` as the video advances. The request releases it when it ends or fails;
a background sweep is the safety net for a request that stops moving (a client that stopped
reading a stream leaves its generator suspended): after `idle_ttl_s` without a frame the
session is dropped, then its claim released, and the request, if it ever resumes, ends with
an error.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zooserve.core.aio import cancel_and_wait
from zooserve.core.errors import ServiceBusy
from zooserve.manager import ModelManager
from zooserve.runtimes.memory import MB

log = logging.getLogger("zooserve.pipelines.track")

#: Re-reserve when a session grew by this much since its last reservation (bytes or share).
GROWTH_STEP_BYTES = 1 * MB
GROWTH_STEP_SHARE = 0.10


@dataclass
class SessionRecord:
    reason: str
    session: object  # the tracker's session (its tensors): only referenced here
    reserved: int = 0  # bytes in the ledger now
    peak: int = 0  # most bytes the session held
    last_active: float = 0.0  # seconds on the sessions clock
    expired: bool = False
    holds: Sequence[str] = ()


class TrackingSessions:
    """The live tracking sessions of one manager. All methods run on the event loop."""

    def __init__(
        self,
        manager: ModelManager,
        idle_ttl_s: float = 300.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.manager = manager
        self.idle_ttl_s = idle_ttl_s
        self.clock = clock or manager.clock
        self.records: dict[str, SessionRecord] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def open(
        self, reason: str, session: object, nbytes: int = 0, holds: Sequence[str] = ()
    ) -> str:
        """Claim a new session's bytes and keep the session; returns its ledger key.
        `holds`: the models the request has leased (never evicted for its own session)."""
        key = f"tracking:{uuid.uuid4().hex[:12]}"
        await self.manager.reserve(key, nbytes, reason, holds=holds)
        self.records[key] = SessionRecord(
            reason, session, nbytes, nbytes, self.clock(), holds=holds
        )
        return key

    def session(self, key: str) -> object:
        """The live session; ServiceBusy once the sweep expired it (its tensors are gone)."""
        record = self.records.get(key)
        if record is None or record.expired:
            raise self._expired_error(key)
        return record.session

    def _expired_error(self, key: str) -> ServiceBusy:
        return ServiceBusy(
            f"tracking session {key} expired after {self.idle_ttl_s:.0f} s without progress",
            {"session": key, "idle_ttl_s": self.idle_ttl_s},
            retry_after=1,
        )

    async def update(self, key: str, nbytes: int) -> None:
        """Record activity and the session's size; re-reserve once it grew by a step.

        Raises ServiceBusy when the sweep expired the session, BudgetExceeded when the grown
        session no longer fits.
        """
        record = self.records.get(key)
        if record is None or record.expired:
            raise self._expired_error(key)
        record.last_active = self.clock()
        record.peak = max(record.peak, nbytes)
        step = max(GROWTH_STEP_BYTES, int(record.reserved * GROWTH_STEP_SHARE))
        if nbytes - record.reserved >= step:
            await self.manager.reserve(key, nbytes, record.reason, holds=record.holds)
            record.reserved = nbytes

    def peak(self, key: str) -> int:
        record = self.records.get(key)
        return record.peak if record else 0

    def close(self, key: str, reason: str = "tracking request ended") -> None:
        """Release the reservation (idempotent)."""
        self.records.pop(key, None)
        self.manager.release(key, reason)

    def sweep(self) -> list[str]:
        """Drop the sessions idle for longer than the time-to-live, then release their claims
        (a claim lives exactly as long as its tensors); returns their keys. The suspended
        request, if it ever resumes, ends with an error instead of using the session."""
        now = self.clock()
        expired = [
            key
            for key, record in self.records.items()
            if not record.expired and now - record.last_active > self.idle_ttl_s
        ]
        for key in expired:
            self.records[key].expired = True
            self.records[key].session = None
            gc.collect()  # a tracker's session can hold reference cycles
            self.manager.release(key, f"idle for more than {self.idle_ttl_s:.0f} s")
        return expired

    def start_sweeper(self, interval_s: float = 10.0) -> None:
        """Sweep periodically on the running event loop (once; later calls do nothing)."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(interval_s))

    async def stop_sweeper(self) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None

    async def _sweep_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            for key in self.sweep():
                log.warning("released idle tracking session %s", key)
