"""The claims ledger: every byte of device memory the service holds, and how to get it back.

A claim is held by a loaded (or loading) model, a tracking session, an external engine or
anything else that holds device memory. It says how room can be made from it: evicted (an
idle model), slept (an idle engine with a sleep/wake API), waited for (a session, a busy
model: their owner gives them back) or never (a pinned model, an engine that cannot sleep).
The ledger refuses any change that would take the total over the budget: the scheduler must
make room first, so "never over budget" holds by construction and is checked on every change.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

MODEL_PREFIX = "model:"


def model_key(name: str) -> str:
    """The ledger key of model `name`'s claim."""
    return MODEL_PREFIX + name


def model_name(key: str) -> str | None:
    """The model a ledger key belongs to, or None for other claims (sessions, engines)."""
    return key.removeprefix(MODEL_PREFIX) if key.startswith(MODEL_PREFIX) else None


class Reclaim(enum.StrEnum):
    EVICT = "evict"  # unload it (a model)
    SLEEP = "sleep"  # ask it to release its memory and keep running (an engine)
    WAIT = "wait"  # only its owner gives it back (a tracking session)
    NEVER = "never"  # stays until stopped (a pinned model, an engine without sleep)


@dataclass(eq=False)
class Claim:
    key: str  # "model:<name>", "tracking:<id>", "engine:<name>"
    nbytes: int
    reclaim: Reclaim
    reason: str = ""
    #: Whether its owner is using it now (a leased model, an engine answering a request).
    busy: Callable[[], bool] = field(default=lambda: False)
    #: For SLEEP claims: releases the memory and shrinks the claim (through the ledger).
    sleeper: Callable[[], Awaitable[object]] | None = None
    floor: int = 0  # bytes a SLEEP claim keeps while asleep
    last_used: float = 0.0
    keep_alive: float = float("inf")  # seconds idle before it may go first
    reload_seconds: float = 0.0  # what getting it back costs
    reclaiming: bool = False  # an eviction or sleep is under way

    @property
    def reclaimable(self) -> bool:
        """Room can be made from it now, by the scheduler, without waiting for anyone."""
        return (
            self.reclaim in (Reclaim.EVICT, Reclaim.SLEEP)
            and not self.reclaiming
            and not self.busy()
        )


class LedgerOverflow(AssertionError):
    """A change would take the ledger over the budget: a scheduler bug, never a caller's."""


class Ledger:
    """Claims by key, their total, and the highest total ever seen."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.claims: dict[str, Claim] = {}
        self.peak_used_bytes = 0

    def __iter__(self) -> Iterator[Claim]:
        return iter(list(self.claims.values()))

    def __contains__(self, key: str) -> bool:
        return key in self.claims

    def get(self, key: str) -> Claim | None:
        return self.claims.get(key)

    def used_bytes(self) -> int:
        return sum(claim.nbytes for claim in self.claims.values())

    def free_bytes(self) -> int:
        return self.budget_bytes - self.used_bytes()

    def put(self, claim: Claim) -> Claim:
        """Add a claim, or replace the one under its key."""
        previous = self.claims.get(claim.key)
        self._check(claim.nbytes - (previous.nbytes if previous else 0), claim.key)
        self.claims[claim.key] = claim
        self._note_peak()
        return claim

    def resize(self, key: str, nbytes: int) -> None:
        claim = self.claims[key]
        self._check(nbytes - claim.nbytes, key)
        claim.nbytes = nbytes
        self._note_peak()

    def drop(self, key: str) -> Claim | None:
        return self.claims.pop(key, None)

    def _check(self, growth: int, key: str) -> None:
        if growth > 0 and self.used_bytes() + growth > self.budget_bytes:
            raise LedgerOverflow(
                f"{key}: +{growth} bytes would exceed the budget "
                f"({self.used_bytes()} of {self.budget_bytes} used)"
            )

    def _note_peak(self) -> None:
        self.peak_used_bytes = max(self.peak_used_bytes, self.used_bytes())
