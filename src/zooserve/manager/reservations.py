"""Claims beyond models: a tracking session's memory bank, an external engine. They share the
ledger with the models; growing one is admitted through the scheduler like a load."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zooserve.catalog import Config
from zooserve.core import request_context
from zooserve.core.events import Event, EventLog
from zooserve.manager.claims import Claim, Ledger, model_name
from zooserve.manager.scheduler import Scheduler, Ticket
from zooserve.manager.state import ModelState


@dataclass(eq=False)
class Reservations:
    """Claims in the ledger that belong to no model, by key."""

    config: Config
    ledger: Ledger
    scheduler: Scheduler
    events: EventLog
    state_of: Callable[[str], ModelState]  # a model by name, or ModelNotFound
    clock: Callable[[], float]

    def _is_model(self, key: str) -> bool:
        name = model_name(key)
        return name is not None and name in self.config.models

    def by_key(self) -> dict[str, int]:
        """Bytes claimed outside models (tracking sessions, engines), by key."""
        return {c.key: c.nbytes for c in self.ledger if not self._is_model(c.key)}

    async def reserve(self, claim: Claim, holds: Sequence[str] = ()) -> None:
        """Put `claim`, replacing an earlier claim under its key. Growth is admitted through
        the scheduler ahead of new plans (the caller usually holds leases others wait for);
        shrinking is immediate. `holds`: the models the caller has leased (never evicted for
        its own claim). Raises BudgetExceeded / ServiceBusy like a load."""
        claim.last_used = self.clock()
        held = self.ledger.get(claim.key)
        if held is not None and claim.nbytes <= held.nbytes:
            self.ledger.put(claim)
            self.scheduler.dispatch()
        else:
            leased = frozenset(self.state_of(name).key for name in holds)
            ticket = Ticket(claim.key, extras=(claim,), urgent=True, holds=leased)
            await self.scheduler.admit(
                ticket, self.config.admission_timeout_s, request_context.client_gone.get()
            )
        self.events.record(Event("reserve", claim.key, claim.reason, bytes=claim.nbytes))

    def release(self, key: str, reason: str = "released") -> None:
        """Give back a claim outside models (no-op when absent)."""
        if self._is_model(key):
            return
        claim = self.ledger.drop(key)
        if claim is not None:
            self.events.record(Event("release", key, reason, bytes=claim.nbytes))
            self.scheduler.dispatch()
