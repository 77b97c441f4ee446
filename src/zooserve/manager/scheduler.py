"""The admission queue: whole plans admitted from a bounded queue, no lock held across a wait.

A request declares its plan (the models it will lease, the bytes it will claim beside them)
and waits in the queue until the plan is admitted as a whole. Every change of state (a lease
ends, a load or unload finishes, a claim shrinks, a request arrives or leaves) runs one
dispatch pass: synchronous, on the event loop, so nothing changes under it. The pass asks the
policy (zooserve.manager.policy) about each queued plan in its `serve_order` (the missing model
most queued plans want first) and carries out the answer: grant it, start reclaiming claims
for it, leave it waiting or refuse it. A plan that fits is granted even when an earlier one
waits for busy models; a plan that is being made room for keeps that room (its bytes are
earmarked for it, not taken by later plans), and the plans missing the same models come with
it. One swap at a time, when the hardware is idle: while a load, a reclaim or a request is
under way, and for `settle_s` after the last one ended (the client just answered usually asks
again within a round trip), a reclaim waits (what they serve changes what is wanted next;
policy.swap_at) unless its request is overdue (`max_wait_s`, the age cap). The clock is
injected, so bench/churn_replay.py runs this very scheduler on simulated time.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from zooserve.core.errors import MediaClosed, QueueFull, ZooError
from zooserve.manager import policy
from zooserve.manager.claims import Claim, Ledger, model_key
from zooserve.manager.policy import Candidate, Verdict, Waiting, decide, serve_order

#: How often a queued request checks whether its client is still there (seconds).
CLIENT_POLL_S = 0.5
#: How many of the latest plans count as "recently asked" when choosing what a swap evicts
#: (policy.Candidate.recently_asked): enough to tell a hot model from the tail, few enough
#: to follow a change of what clients ask for within a few dozen requests.
RECENT_PLANS = 32


@dataclass(eq=False)
class Ticket:
    """One queued plan."""

    label: str  # what it is for, in messages: model names or a claim key
    models: tuple[str, ...] = ()
    extras: tuple[Claim, ...] = ()  # claims to add or grow beside the models
    urgent: bool = False  # asked by a holder of leases (growth): ahead of new plans
    patient: bool = True  # may wait for busy claims; else refused as busy at once
    future: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    enqueued_at: float = field(default_factory=time.monotonic)
    incoming: set[str] = field(default_factory=set)  # claim keys being reclaimed for it
    #: Claims its requester holds meanwhile (its leased models): never room for itself.
    holds: frozenset[str] = frozenset()


@dataclass
class Room:
    """What one dispatch pass has promised so far."""

    now: float
    wanted: set[str]  # claim keys queued plans need: in demand
    swap_at: float  # when a swap that is not overdue may start (policy.swap_at)
    earmarked: int = 0  # free bytes kept for plans that room is being made for
    coming: frozenset[str] = frozenset()  # models room is being made for
    asked: Counter[str] = field(default_factory=Counter)  # claim key -> recent plans for it


class Admission(Protocol):
    """What the scheduler asks about plans, and how it grants them (see admission.py)."""

    def plan_need(self, ticket: Ticket) -> int | None: ...
    def missing(self, ticket: Ticket) -> frozenset[str]: ...
    def working(self) -> bool: ...
    def candidates(
        self, exclude: set[str], wanted: Collection[str], asked: Mapping[str, int]
    ) -> list[Candidate]: ...
    def ceiling(self, ticket: Ticket) -> int: ...
    def grant(self, ticket: Ticket) -> None: ...
    def ungrant(self, ticket: Ticket) -> None: ...
    def start_reclaim(self, key: str, for_whom: str) -> object: ...
    def refusal(self, ticket: Ticket, need: int) -> ZooError: ...
    def busy_error(self, ticket: Ticket, need: int) -> ZooError: ...


class Scheduler:
    """The queue of plans and the dispatch pass that admits them."""

    #: Set by the owner before the first request: admission starts loads and reclaims, and
    #: those report back here when they end, so one of the two is wired after the other.
    admission: Admission

    def __init__(
        self,
        ledger: Ledger,
        max_pending: int,
        max_wait_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        settle_s: float = policy.SETTLE_S,
    ) -> None:
        self.ledger = ledger
        self.clock = clock  # injectable: bench/churn_replay.py runs it on simulated time
        self.settle_s = settle_s
        self._idle_since = float("-inf")  # when the hardware last went idle (inf: busy)
        self.max_pending = max_pending
        self.max_wait_s = max_wait_s
        self.queue: list[Ticket] = []
        #: Claim keys of the models the latest plans asked for, newest last.
        self.recent: deque[str] = deque(maxlen=RECENT_PLANS)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self.admitted = 0
        self.refused_full = 0
        self._dispatching = False
        self._again = False

    @property
    def pending(self) -> int:
        return len(self.queue)

    def queued_models(self) -> set[str]:
        """The models the queued plans want."""
        return {name for ticket in self.queue for name in ticket.models}

    async def admit(
        self,
        ticket: Ticket,
        timeout_s: float,
        client_gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Queue `ticket` and return once its plan is granted; raise its refusal, QueueFull,
        ServiceBusy after `timeout_s`, or MediaClosed when the client went away meanwhile."""
        self.enqueue(ticket)
        try:
            deadline = time.monotonic() + timeout_s
            while not ticket.future.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0 and self._on_its_way(ticket):
                    remaining = CLIENT_POLL_S  # room is being made for it: not a busy wait
                elif remaining <= 0:
                    raise self.admission.busy_error(ticket, self.admission.plan_need(ticket) or 0)
                poll = min(remaining, CLIENT_POLL_S) if client_gone else remaining
                await asyncio.wait([ticket.future], timeout=poll)
                if not ticket.future.done() and client_gone is not None and await client_gone():
                    raise MediaClosed(f"the client went away while {ticket.label} waited")
            ticket.future.result()
            self.admitted += 1
        except BaseException:
            self._withdraw(ticket)
            raise

    def enqueue(self, ticket: Ticket) -> None:
        """Queue `ticket` (stamped now) and run a dispatch pass, which may grant it at once;
        raise QueueFull when `max_pending` plans already wait and it does not fit now."""
        ticket.enqueued_at = self.clock()
        if not ticket.urgent:  # a holder's growth is not a new ask
            self.recent.extend(model_key(name) for name in ticket.models)
        full = not ticket.urgent and sum(not t.urgent for t in self.queue) >= self.max_pending
        if full and not self._fits_now(ticket):
            self.refused_full += 1
            raise QueueFull(
                f"{self.max_pending} requests already wait for memory (max_pending)",
                {"pending": self.pending, "max_pending": self.max_pending},
                retry_after=1.0,
            )
        if ticket.urgent or full:  # (a full queue only lets in what fits at once: first)
            first_new = next((i for i, t in enumerate(self.queue) if not t.urgent), None)
            self.queue.insert(len(self.queue) if first_new is None else first_new, ticket)
        else:
            self.queue.append(ticket)
        try:
            self.dispatch()
        except BaseException:
            self._withdraw(ticket)
            raise

    def _fits_now(self, ticket: Ticket) -> bool:
        """Admissible without waiting or evicting (its models loaded, or room free): such a
        request never waits behind others, so a full queue does not refuse it."""
        need = self.admission.plan_need(ticket)
        return need is not None and need <= self.ledger.free_bytes()

    def _withdraw(self, ticket: Ticket) -> None:
        """A ticket whose caller is gone: out of the queue, or its grant given back."""
        if ticket in self.queue:
            self.queue.remove(ticket)
        if ticket.future.done():
            if not ticket.future.cancelled() and ticket.future.exception() is None:
                self.admission.ungrant(ticket)
        else:
            ticket.future.cancel()
        self.dispatch()

    def dispatch(self) -> None:
        """Run passes until nothing changes; re-entrant calls ask for one more pass."""
        if self._dispatching:
            self._again = True
            return
        self._dispatching = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._pass()
        finally:
            self._dispatching = False

    def _pass(self) -> None:
        """Ask the policy about every queued plan, in `serve_order`, and carry out the answers."""
        for ticket in [t for t in self.queue if t.future.done()]:
            self.queue.remove(ticket)
        now, queue = self.clock(), list(self.queue)  # granting takes plans out of the queue
        missing = [self.admission.missing(ticket) for ticket in queue]
        waiting = [
            Waiting(gone, ticket.urgent, self._overdue(ticket, now))
            for ticket, gone in zip(queue, missing, strict=True)
        ]
        wanted = {model_key(name) for ticket in queue for name in ticket.models}
        room = Room(now, wanted, self._swap_at(now), asked=Counter(self.recent))
        for index in serve_order(waiting):
            ticket = queue[index]
            if missing[index] and missing[index] <= room.coming:
                continue  # an earlier plan is making room for the same models: it comes with it
            self._ask(ticket, waiting[index], room)
            if ticket.incoming:
                room.coming |= missing[index]

    def _ask(self, ticket: Ticket, waiting: Waiting, room: Room) -> None:
        """Decide for one queued plan and carry the decision out."""
        admission = self.admission
        need = admission.plan_need(ticket)
        if need is None:  # a model of the plan is unloading: wait for it
            return
        free = max(0, self.ledger.free_bytes() - room.earmarked)
        incoming = self._incoming(ticket)
        exclude = {model_key(name) for name in ticket.models} | {c.key for c in ticket.extras}
        candidates = admission.candidates(exclude, room.wanted, room.asked)
        decision = decide(
            need, free, incoming, candidates, admission.ceiling(ticket), waiting.overdue
        )
        held = room.now < room.swap_at and not (waiting.urgent or waiting.overdue)
        if decision.verdict is Verdict.ADMIT:
            self.queue.remove(ticket)
            admission.grant(ticket)
            ticket.future.set_result(None)
            room.swap_at = float("inf")  # it loads or runs now: a swap waits for what it changes
        elif decision.verdict is Verdict.REFUSE:
            self.queue.remove(ticket)
            ticket.future.set_exception(admission.refusal(ticket, need))
        elif decision.verdict is Verdict.RECLAIM and held:
            # One swap at a time: the one under way may change what is wanted next.
            self._wake_at(min(ticket.enqueued_at + self.max_wait_s, room.swap_at))
        elif decision.verdict is Verdict.RECLAIM:
            for victim in decision.victims:
                ticket.incoming.add(victim.key)
                admission.start_reclaim(victim.key, ticket.label)
            room.earmarked += min(free, need)
            room.swap_at = float("inf")
        elif not incoming and not ticket.patient:
            self.queue.remove(ticket)
            ticket.future.set_exception(admission.busy_error(ticket, need))
        elif incoming:  # room is on its way: what is free is kept for it
            room.earmarked += min(free, need)
        elif decision.deferred:  # queued plans need the idle claims, until max_wait_s
            self._wake_at(ticket.enqueued_at + self.max_wait_s)
        # else: busy claims hold the room; a later request that fits may go first

    def _overdue(self, ticket: Ticket, now: float) -> bool:
        return ticket.urgent or now - ticket.enqueued_at >= self.max_wait_s

    def _swap_at(self, now: float) -> float:
        """When a swap that is not overdue may start (policy.swap_at), noting when the
        hardware (loads, reclaims for queued plans, requests) went idle."""
        busy = self.admission.working() or any(self._incoming(ticket) for ticket in self.queue)
        if busy:
            self._idle_since = float("inf")
        elif self._idle_since == float("inf"):
            self._idle_since = now  # it went idle just now
        return policy.swap_at(busy, self._idle_since, self.settle_s)

    def _wake_at(self, when: float) -> None:
        """One timer for the earliest deferred request: dispatch again when it is overdue."""
        if self._timer is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        delay = max(0.0, when - self.clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self.wake)

    @property
    def wake_due(self) -> float:
        """When the pending timer fires (inf: none); a simulated clock calls `wake` then."""
        return self._timer_at

    def wake(self) -> None:
        """The timer fired: a deferred request is overdue now."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, float("inf")
        self.dispatch()

    def _on_its_way(self, ticket: Ticket) -> bool:
        """Claims are being reclaimed for it, or a model of its plan is unloading."""
        return bool(self._incoming(ticket)) or self.admission.plan_need(ticket) is None

    def _incoming(self, ticket: Ticket) -> int:
        """Bytes still being reclaimed for `ticket`."""
        total = 0
        for key in list(ticket.incoming):
            claim = self.ledger.get(key)
            if claim is None or not claim.reclaiming:
                ticket.incoming.discard(key)
            else:
                total += claim.nbytes - claim.floor
        return total
