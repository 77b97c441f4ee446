"""The manager's side of the scheduler: what a plan needs, what room can be made from, and
granting a plan (leases and claims) in one step on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from zooserve import request_context
from zooserve.errors import BudgetExceeded, ServiceBusy, ZooError
from zooserve.events import Event
from zooserve.manager.claims import Claim, Ledger, Reclaim, model_name
from zooserve.manager.policy import Candidate
from zooserve.manager.scheduler import Scheduler, Ticket
from zooserve.manager.state import ModelState, Status
from zooserve.memory import MB

if TYPE_CHECKING:
    from zooserve.catalog import Config
    from zooserve.events import EventLog


class Admission:
    """Mixin of ModelManager: the `Host` the scheduler drives."""

    config: Config
    ledger: Ledger
    scheduler: Scheduler
    states: dict[str, ModelState]
    events: EventLog
    clock: Callable[[], float]
    _tasks: set[asyncio.Task[Any]]

    if TYPE_CHECKING:  # provided by the other parts of ModelManager

        def admission_bytes(self, state: ModelState) -> int: ...
        def state(self, name: str) -> ModelState: ...
        def _begin_load(self, state: ModelState, nbytes: int, reason: str) -> None: ...
        def _lease(self, state: ModelState) -> None: ...
        def _end_lease(self, state: ModelState) -> None: ...
        def _start_unload(
            self, state: ModelState, kind: str, reason: str, park: bool = False
        ) -> asyncio.Task[Event]: ...
        def _dispatch(self) -> None: ...

    def model_of(self, key: str) -> ModelState | None:
        name = model_name(key)
        return self.states.get(name) if name is not None else None

    def plan_need(self, ticket: Ticket) -> int | None:
        need = 0
        for name in ticket.models:
            state = self.states[name]
            if state.status is Status.UNLOADING:
                return None
            if state.status is Status.UNLOADED:
                need += self.admission_bytes(state)
        for claim in ticket.extras:
            held = self.ledger.get(claim.key)
            need += max(0, claim.nbytes - (held.nbytes if held else 0))
        return need

    def candidates(self, exclude: set[str], since: float = float("inf")) -> list[Candidate]:
        """Claims room could be made from now; those used after `since` are in demand."""
        now = self.clock()
        found = []
        for claim in self.ledger:
            if claim.key in exclude or not claim.reclaimable:
                continue
            state = self.model_of(claim.key)
            last_used = state.last_used if state else claim.last_used
            keep_alive = state.keep_alive if state else claim.keep_alive
            reload = (state.last_load_seconds or 0.0) if state else claim.reload_seconds
            found.append(
                Candidate(
                    claim.key,
                    claim.nbytes - claim.floor,
                    claim.reclaim,
                    now - last_used >= keep_alive,
                    last_used,
                    reload,
                    in_demand=last_used > since,
                )
            )
        return found

    def ceiling(self, ticket: Ticket) -> int:
        """The most `ticket` could ever get: the budget less what can never be reclaimed
        (pinned models, engines that can't sleep) and less what its own requester holds
        (its leases, the claims it grows): those are never freed for it."""
        own = ticket.holds | {c.key for c in ticket.extras}
        kept = sum(c.nbytes for c in self.ledger if c.reclaim is Reclaim.NEVER or c.key in own)
        return self.ledger.budget_bytes - kept

    def grant(self, ticket: Ticket) -> None:
        for name in ticket.models:
            state = self.states[name]
            if state.status is Status.UNLOADED:
                self._begin_load(state, self.admission_bytes(state), f"first use by {ticket.label}")
            self._lease(state)
        for claim in ticket.extras:
            if claim.key in self.ledger and self.model_of(claim.key) is not None:
                self.ledger.resize(claim.key, claim.nbytes)  # a model measured above admission
            else:
                self.ledger.put(claim)

    def ungrant(self, ticket: Ticket) -> None:
        for name in ticket.models:
            self._end_lease(self.states[name])
        for claim in ticket.extras:
            if self.model_of(claim.key) is None and self.ledger.get(claim.key) is claim:
                self.ledger.drop(claim.key)

    def start_reclaim(self, key: str, for_whom: str) -> asyncio.Task[Any] | None:
        """Evict or sleep the claim under `key` in a task of its own (returned)."""
        claim = self.ledger.get(key)
        if claim is None:
            return None
        claim.reclaiming = True
        state = self.model_of(key)
        if state is not None:
            return self._start_unload(state, "evict", f"make room for {for_whom}", park=True)
        sleeper = claim.sleeper
        assert sleeper is not None, f"{key} is not sleepable"

        async def sleep() -> None:
            try:
                await sleeper()
                self.events.record(Event("sleep", key, f"make room for {for_whom}"))
            except Exception as exc:
                self.events.record(Event("sleep_failed", key, f"{type(exc).__name__}: {exc}"))
            finally:
                if self.ledger.get(key) is claim:  # not shrunk (replaced) by the sleep
                    claim.reclaiming = False
                self._dispatch()

        task = asyncio.create_task(sleep())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _numbers(self, ticket: Ticket, need: int) -> dict[str, Any]:
        return {
            "for": ticket.label,
            "needed_bytes": need,
            "used_bytes": self.ledger.used_bytes(),
            "budget_bytes": self.ledger.budget_bytes,
        }

    def refusal(self, ticket: Ticket, need: int) -> ZooError:
        never = self.ledger.budget_bytes - self.ceiling(ticket)
        return BudgetExceeded(
            f"{ticket.label} needs about {need / MB:.1f} MB more but the budget is "
            f"{self.ledger.budget_bytes / MB:.0f} MB, of which {never / MB:.1f} MB can never be "
            "freed for it (pinned models, engines that cannot sleep, what it holds itself)",
            {**self._numbers(ticket, need), "unreclaimable_bytes": never},
        )

    def busy_error(self, ticket: Ticket, need: int) -> ZooError:
        busy: list[dict[str, Any]] = [
            {"claim": c.key, "bytes": c.nbytes, "reclaim": c.reclaim.value}
            for c in self.ledger
            if not c.reclaimable and c.reclaim is not Reclaim.NEVER
        ]
        names = ", ".join(str(b["claim"]) for b in busy) or "nothing reclaimable"
        return ServiceBusy(
            f"no room for {ticket.label}: {need / MB:.1f} MB needed, "
            f"{self.ledger.free_bytes() / MB:.1f} MB free; held by {names}",
            {**self._numbers(ticket, need), "busy": busy},
            retry_after=max(1.0, self.config.admission_timeout_s / 2),
        )

    def model_claim(self, state: ModelState, nbytes: int, reason: str) -> Claim:
        return Claim(
            state.key,
            nbytes,
            Reclaim.NEVER if state.pinned else Reclaim.EVICT,
            reason,
            busy=lambda: not state.idle,
            last_used=self.clock(),
        )

    # --- claims beyond models ----------------------------------------------------------------

    @property
    def reservations(self) -> dict[str, int]:
        """Bytes claimed outside models (tracking sessions, engines), by key."""
        return {c.key: c.nbytes for c in self.ledger if self.model_of(c.key) is None}

    def used_bytes(self) -> int:
        return self.ledger.used_bytes()

    async def reserve(
        self,
        key: str,
        nbytes: int,
        reason: str,
        *,
        reclaim: Reclaim = Reclaim.WAIT,
        sleeper: Callable[[], Awaitable[object]] | None = None,
        busy: Callable[[], bool] | None = None,
        floor: int = 0,
        holds: Sequence[str] = (),
    ) -> None:
        """Claim `nbytes` outside models (a session's memory bank, an engine) under `key`,
        replacing an earlier claim under it. Growth is admitted through the scheduler ahead of
        new plans (the caller usually holds leases others wait for); shrinking is immediate.
        `holds`: the models the caller has leased (never evicted for its own claim).
        Raises BudgetExceeded / ServiceBusy like a load."""
        claim = Claim(key, nbytes, reclaim, reason, busy or (lambda: False), sleeper, floor)
        claim.last_used = self.clock()
        held = self.ledger.get(key)
        if held is not None and nbytes <= held.nbytes:
            self.ledger.put(claim)
            self._dispatch()
        else:
            leased = frozenset(self.state(name).key for name in holds)
            ticket = Ticket(key, extras=(claim,), urgent=True, holds=leased)
            await self.scheduler.admit(
                ticket, self.config.admission_timeout_s, request_context.client_gone.get()
            )
        self.events.record(Event("reserve", key, reason, bytes=nbytes))

    def release(self, key: str, reason: str = "released") -> None:
        """Give back a claim outside models (no-op when absent)."""
        if self.model_of(key) is not None:
            return
        claim = self.ledger.drop(key)
        if claim is not None:
            self.events.record(Event("release", key, reason, bytes=claim.nbytes))
            self._dispatch()
