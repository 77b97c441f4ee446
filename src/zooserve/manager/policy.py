"""Admission policy: pure functions over a snapshot, so every rule is tested by table.

The mechanism (zooserve.manager.scheduler) asks one question per queued request: given the
bytes it still needs, the free bytes, the bytes already being reclaimed for it and the claims
room could be made from now, admit it, reclaim these claims for it, let it wait, or refuse it.
"""

from __future__ import annotations

import enum
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


class Verdict(enum.StrEnum):
    ADMIT = "admit"  # fits now
    RECLAIM = "reclaim"  # fits once the chosen claims are evicted or slept
    WAIT = "wait"  # room is on its way, or only busy claims hold it
    REFUSE = "refuse"  # larger than everything that could ever be freed


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    victims: tuple[Candidate, ...] = ()


def reclaim_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Expired keep-alive first, then least recently used; among equals the one that is
    cheaper to get back (reload or wake) goes first."""
    return sorted(candidates, key=lambda c: (not c.expired, c.last_used, c.reload_seconds))


def decide(
    need: int, free: int, incoming: int, candidates: Sequence[Candidate], ceiling: int
) -> Decision:
    """What to do for a request needing `need` more bytes.

    `free`: bytes nobody claims (less what earlier requests were promised); `incoming`: bytes
    already being reclaimed for this request; `ceiling`: the budget less what can never be
    reclaimed. Victims are taken in `reclaim_order` until the request fits, and only if it
    then fits: evicting models while busy ones still block the request would only cost reloads.
    """
    if need > ceiling:
        return Decision(Verdict.REFUSE)
    if need <= free:
        return Decision(Verdict.ADMIT)
    short = need - free - incoming
    if short <= 0:
        return Decision(Verdict.WAIT)
    victims: list[Candidate] = []
    for candidate in reclaim_order(candidates):
        if short <= 0:
            break
        victims.append(candidate)
        short -= candidate.nbytes
    if short > 0:
        return Decision(Verdict.WAIT)
    return Decision(Verdict.RECLAIM, tuple(victims))
