"""Admission by the claims ledger: what a plan needs, what room can be made from, what it
can never get, and granting a plan (leases and claims) in one step on the event loop. The
scheduler (scheduler.py) asks these questions; the policy (policy.py) decides from the answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from zooserve.catalog import Config
from zooserve.core.errors import BudgetExceeded, ServiceBusy, ZooError
from zooserve.manager.claims import Ledger, Reclaim, model_key, model_name
from zooserve.manager.leases import Leases
from zooserve.manager.loader import Loader
from zooserve.manager.policy import Candidate
from zooserve.manager.scheduler import Ticket
from zooserve.manager.state import ModelState, Status, expected_bytes
from zooserve.runtimes.memory import MB


@dataclass(eq=False)
class LedgerAdmission:
    """The `Admission` the scheduler asks: plans are measured against the claims ledger and
    granted by leasing their models (starting the loads they need) and adding their claims."""

    config: Config
    ledger: Ledger
    states: dict[str, ModelState]
    loader: Loader
    leases: Leases
    clock: Callable[[], float]

    def model_of(self, key: str) -> ModelState | None:
        name = model_name(key)
        return self.states.get(name) if name is not None else None

    def plan_need(self, ticket: Ticket) -> int | None:
        """Bytes the plan still needs, or None while a model of it unloads (wait for it)."""
        if any(self.states[name].status is Status.UNLOADING for name in ticket.models):
            return None
        need = sum(self.load_sizes(ticket).values())
        for claim in ticket.extras:
            held = self.ledger.get(claim.key)
            need += max(0, claim.nbytes - (held.nbytes if held else 0))
        return need

    def load_sizes(self, ticket: Ticket) -> dict[str, int]:
        """The claim each unloaded model of the plan is admitted with: its `admission_bytes`,
        raised toward `expected_bytes` (its family under-estimated) as far as the plan's
        ceiling allows, so a correction never makes a plan that fits impossible."""
        unloaded = [self.states[n] for n in ticket.models]
        unloaded = [s for s in unloaded if s.status is Status.UNLOADED]
        plain = {s.name: s.admission_bytes for s in unloaded}
        extra = {s.name: expected_bytes(s, self.states.values()) - plain[s.name] for s in unloaded}
        if not any(extra.values()):
            return plain
        held = (self.ledger.get(model_key(name)) for name in ticket.models)
        kept = sum(claim.nbytes for claim in held if claim is not None)  # its loaded models
        slack = max(0, self.ceiling(ticket) - kept - sum(plain.values()))
        share = min(1.0, slack / sum(extra.values()))
        return {name: nbytes + int(extra[name] * share) for name, nbytes in plain.items()}

    def missing(self, ticket: Ticket) -> frozenset[str]:
        """The models of `ticket`'s plan that are neither loaded nor loading."""
        gone = (Status.UNLOADED, Status.UNLOADING)
        return frozenset(name for name in ticket.models if self.states[name].status in gone)

    def working(self) -> bool:
        """A model is loading (or waking from the host tier) or leased by a request."""
        return any(s.status is Status.LOADING or s.refcount for s in self.states.values())

    def candidates(
        self,
        exclude: set[str],
        wanted: Collection[str] = (),
        asked: Mapping[str, int] | None = None,
    ) -> list[Candidate]:
        """Claims room could be made from now; those under a key in `wanted` (queued plans
        need them) are in demand; `asked`: how many recent plans asked for each key."""
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
                    in_demand=claim.key in wanted,
                    recently_asked=(asked or {}).get(claim.key, 0),
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
        sizes = self.load_sizes(ticket)
        for name in ticket.models:
            state = self.states[name]
            if name in sizes:
                state.expected_at_admission = expected_bytes(state, self.states.values())
                self.loader.begin(state, sizes[name], f"first use by {ticket.label}")
            self.leases.lease(state)
        for claim in ticket.extras:
            if claim.key in self.ledger and self.model_of(claim.key) is not None:
                self.ledger.resize(claim.key, claim.nbytes)  # a model measured above admission
            else:
                self.ledger.put(claim)

    def ungrant(self, ticket: Ticket) -> None:
        for name in ticket.models:
            self.leases.end(self.states[name])
        for claim in ticket.extras:
            if self.model_of(claim.key) is None and self.ledger.get(claim.key) is claim:
                self.ledger.drop(claim.key)

    def start_reclaim(self, key: str, for_whom: str) -> asyncio.Task[Any] | None:
        """Evict or sleep the claim under `key` in a task of its own (returned)."""
        return self.loader.reclaim(key, for_whom)

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
