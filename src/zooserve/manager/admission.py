"""Admission by the claims ledger: what a plan needs, what room can be made from, what it
can never get, and granting a plan (leases and claims) in one step on the event loop. The
scheduler (scheduler.py) asks these questions; the policy (policy.py) decides from the answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from zooserve.catalog import Config
from zooserve.core.errors import BudgetExceeded, ServiceBusy, ZooError
from zooserve.manager.claims import Ledger, Reclaim, model_name
from zooserve.manager.leases import Leases
from zooserve.manager.loader import Loader
from zooserve.manager.policy import Candidate
from zooserve.manager.scheduler import Ticket
from zooserve.manager.state import ModelState, Status
from zooserve.runtimes.memory import MB


class LedgerAdmission:
    """The `Admission` the scheduler asks: plans are measured against the claims ledger and
    granted by leasing their models (starting the loads they need) and adding their claims."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        states: dict[str, ModelState],
        loader: Loader,
        leases: Leases,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.states = states
        self.loader = loader
        self.leases = leases
        self.clock = clock

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
                need += state.admission_bytes
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
                self.loader.begin(state, state.admission_bytes, f"first use by {ticket.label}")
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
