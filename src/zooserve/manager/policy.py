"""Admission policy: pure functions over a snapshot, so every rule is tested by table.

The mechanism (zooserve.manager.scheduler) asks, in `serve_order`, one question per queued
request: given the bytes it still needs, the free bytes, the bytes already being reclaimed for
it and the claims room could be made from now, admit it, reclaim these claims for it, let it
wait, or refuse it (`decide`). Demand is what is outstanding (issue #18): a claim is in demand
while a queued plan needs it, and the missing model most queued plans want is loaded first;
among idle claims none needs, the one used longest ago goes first, its reload seconds times
its recent asks counted as later use (GreedyDual-Size-Frequency). A swap that is not overdue
starts only once the hardware is idle and settled (`swap_at`).
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from zooserve.manager.claims import Reclaim


@dataclass(frozen=True)
class Candidate:
    """A claim room could be made from now (idle; evictable or sleepable)."""

    key: str
    nbytes: int
    how: Reclaim
    expired: bool = False  # idle past its keep-alive
    last_used: float = 0.0
    reload_seconds: float = 0.0
    #: A queued plan needs it: evicting it would mean loading it again for that plan (a swap
    #: back and forth); spared until the request is overdue (waited `max_wait_s`).
    in_demand: bool = False
    #: How many of the last plans asked for it (scheduler.RECENT_PLANS); 0 for claims no plan
    #: asks for by name (engines, sessions), which then count as asked once.
    recently_asked: int = 0

    @property
    def kept_until(self) -> float:
        """GreedyDual-Size-Frequency's priority: a claim counts as used as many seconds later
        as getting it back would take (a reload's measured seconds already grow with its
        bytes) times how often it was asked for lately, so among equally idle claims the
        costlier and the more wanted stay: a skewed load's hot model, idle for a moment when a
        swap is decided, is not what the swap takes out (issue #18)."""
        return self.last_used + self.reload_seconds * max(1, self.recently_asked)


class Verdict(enum.StrEnum):
    ADMIT = "admit"  # fits now
    RECLAIM = "reclaim"  # fits once the chosen claims are evicted or slept
    WAIT = "wait"  # room is on its way, or only busy claims hold it
    REFUSE = "refuse"  # larger than everything that could ever be freed


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    victims: tuple[Candidate, ...] = ()
    deferred: bool = False  # WAIT although idle claims could make room: they are in demand


def reclaim_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Expired keep-alive first, then those not in demand, then least recently used with
    reload cost and recent asks counted in (`kept_until`)."""
    return sorted(candidates, key=lambda c: (not c.expired, c.in_demand, c.kept_until))


def decide(
    need: int,
    free: int,
    incoming: int,
    candidates: Sequence[Candidate],
    ceiling: int,
    overdue: bool = True,
) -> Decision:
    """What to do for a request needing `need` more bytes.

    `free`: bytes nobody claims (less what earlier requests were promised); `incoming`: bytes
    already being reclaimed for this request; `ceiling`: the budget less what can never be
    reclaimed; `overdue`: the request has waited `max_wait_s` (the age cap that bounds
    starvation), so claims other queued plans need may go for it too. Victims
    are taken in `reclaim_order` until the request fits, and only if it then fits: evicting
    models while busy ones still block the request would only cost reloads.
    """
    if need > ceiling:
        return Decision(Verdict.REFUSE)
    if need <= free:
        return Decision(Verdict.ADMIT)
    short = need - free - incoming
    if short <= 0:
        return Decision(Verdict.WAIT)
    victims = _victims(short, [c for c in candidates if overdue or not c.in_demand])
    if victims is not None:
        return Decision(Verdict.RECLAIM, victims)
    if not overdue and _victims(short, candidates) is not None:
        return Decision(Verdict.WAIT, deferred=True)
    return Decision(Verdict.WAIT)


def _victims(short: int, candidates: Sequence[Candidate]) -> tuple[Candidate, ...] | None:
    """The first claims in `reclaim_order` that free `short` bytes, or None if all can't."""
    victims: list[Candidate] = []
    for candidate in reclaim_order(c for c in candidates if c.nbytes > 0):
        if short <= 0:
            break
        victims.append(candidate)
        short -= candidate.nbytes
    return tuple(victims) if short <= 0 else None


@dataclass(frozen=True)
class Waiting:
    """A queued plan, as `serve_order` sees it."""

    missing: frozenset[str]  # models of its plan that are not loaded or loading
    urgent: bool = False  # a loading model's growth: its load waits on it
    overdue: bool = False  # waited `max_wait_s`


def serve_order(waiting: Sequence[Waiting]) -> list[int]:
    """The order (indices of `waiting`, which is in arrival order) in which a dispatch pass
    asks about the queued plans: urgent first, then the overdue by age (the age cap), then by
    the outstanding demand for the models they miss, most first, so the model most queued
    plans want loads first and everything queued for it is admitted with it. A plan missing
    no model (its models are resident, or it claims bytes beside them) counts as one.

    Counting waited time in (one more per load time waited) was measured: with the real
    server's 0.05 s loads it made the oldest plan decide and cost loads (1.32x the ideal on
    one sequence, 1.00-1.09x by count) for little p99 (bench/README "Churn")."""
    demand = Counter(name for plan in waiting for name in plan.missing)

    def rank(index: int) -> tuple[bool, bool, int, int]:
        plan = waiting[index]
        if plan.urgent or plan.overdue:
            return (not plan.urgent, not plan.overdue, 0, index)
        wanted = max((demand[name] for name in plan.missing), default=1)
        return (True, True, -wanted, index)

    return sorted(range(len(waiting)), key=rank)


#: Seconds a swap that is not overdue waits after the hardware went idle: about a client's
#: round trip, so the request of a client just answered (often for a resident model) is
#: counted before a model is chosen to load and another to evict.
SETTLE_S = 0.05


def swap_at(busy: bool, idle_since: float, settle_s: float = SETTLE_S) -> float:
    """When a swap that is not overdue may start: not while a load, a reclaim or a request
    runs (inf: its end runs a dispatch pass), else `settle_s` after the hardware went idle.
    The ideal swaps only once every outstanding request waits on a missing model; a request
    that runs, or a client about to ask again, may still change what is wanted."""
    return math.inf if busy else idle_since + settle_s
