"""bench/churn.py's workload replayed on simulated time: fast, deterministic, no server.

The real scheduler (zooserve.manager.scheduler, with its policy) runs on a simulated clock
over a stand-in admission: models of given sizes under a budget, a load takes `load_s`, an
eviction `unload_s`, one load at a time, each model answers its requests one at a time in
`infer_s` each, and every closed-loop client sends its next request `rtt_s` after its answer.
Loads are counted and divided by the ideal online schedule of the same sequence
(churn_ideal.py), so a policy change is judged in a second over many seeds and timings
instead of minutes of a noisy real run:

    .venv/bin/python bench/churn_replay.py --seeds 1-20 --max-wait-s 1
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import heapq
import itertools
import math
import statistics
import sys
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.churn_ideal import POPULARITY, ideal_loads, sequence
from zooserve.core.errors import ServiceBusy, ZooError
from zooserve.manager.claims import Claim, Ledger, Reclaim, model_key, model_name
from zooserve.manager.policy import SETTLE_S, Candidate
from zooserve.manager.scheduler import Scheduler, Ticket

#: Model sizes (MB) of bench/churn_zoo.py's zoos under its 100 MB budget.
ZOOS = {"equal": (39.0, 39.0, 39.0, 39.0), "unequal": (18.0, 32.0, 46.0, 60.0)}
BUDGET_MB = 100.0


@dataclass(frozen=True)
class Timing:
    """Simulated seconds; defaults near bench/churn.py's on a loaded 2-core CPU."""

    load_s: float = 0.5
    infer_s: float = 0.02
    unload_s: float = 0.01
    rtt_s: float = 0.005


@dataclass(eq=False)
class Model:
    name: str
    nbytes: int
    status: str = "unloaded"  # loading, loaded, unloading
    refcount: int = 0
    last_used: float = 0.0
    reload_s: float = 0.0
    lane: deque[Ticket] = field(default_factory=deque)  # granted, waiting to run
    running: bool = False

    def busy(self) -> bool:
        return self.status == "loading" or self.refcount > 0


class Replay:
    """One closed-loop run of `order` on simulated time; also the scheduler's `Admission`."""

    def __init__(
        self,
        order: Sequence[str],
        sizes: dict[str, float],
        clients: int,
        max_wait_s: float,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.now = 0.0
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.unsent = deque(order)
        self.clients = clients
        self.models = {name: Model(name, int(mb * 2**20)) for name, mb in sizes.items()}
        self.ledger = Ledger(int(BUDGET_MB * 2**20))
        self.scheduler = Scheduler(
            self.ledger, 1000, max_wait_s, clock=lambda: self.now, settle_s=settle_s
        )
        self.scheduler.admission = self
        self.timing = Timing()
        self.loads = 0
        self.load_queue: deque[Model] = deque()
        self.latencies: list[float] = []
        self.sent_at: dict[int, float] = {}
        self.answered_at = 0.0

    # -- the simulation --------------------------------------------------------------------
    def at(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.events, (self.now + delay, next(self.seq), action))

    def run(self, timing: Timing) -> dict[str, Any]:
        self.timing = timing
        for _ in range(self.clients):
            self.at(0.0, self.send)
        while self.events or (self.scheduler.pending and self.scheduler.wake_due < math.inf):
            due = self.scheduler.wake_due
            if not self.events or due < self.events[0][0]:
                self.now = due + 1e-9  # past it: `now - enqueued_at` may round below the cap
                self.scheduler.wake()
                continue
            self.now, _, action = heapq.heappop(self.events)
            action()
        if self.scheduler.pending or any(m.refcount for m in self.models.values()):
            raise RuntimeError("the replay ended with requests unanswered")
        return {"loads": self.loads, "seconds": self.answered_at, "latencies": self.latencies}

    def send(self) -> None:
        if not self.unsent:
            return
        name = self.unsent.popleft()
        ticket = Ticket(name, models=(name,))
        self.sent_at[id(ticket)] = self.now
        self.scheduler.enqueue(ticket)

    def _loaded(self, model: Model) -> None:
        model.status, model.last_used, model.reload_s = "loaded", self.now, self.timing.load_s
        self.load_queue.popleft()
        if self.load_queue:
            self.at(self.timing.load_s, lambda: self._loaded(self.load_queue[0]))
        self._next(model)
        self.scheduler.dispatch()

    def _next(self, model: Model) -> None:
        """Start the next granted request on `model`'s lane, if it is idle and loaded."""
        if model.running or not model.lane or model.status != "loaded":
            return
        ticket = model.lane.popleft()
        model.running = True
        self.at(self.timing.infer_s, lambda: self._answered(model, ticket))

    def _answered(self, model: Model, ticket: Ticket) -> None:
        model.running, model.refcount, model.last_used = False, model.refcount - 1, self.now
        self.latencies.append(self.now - self.sent_at.pop(id(ticket)))
        self.answered_at = self.now
        self._next(model)
        if self.timing.rtt_s:
            self.at(self.timing.rtt_s, self.send)
        else:  # the client's next request is there before the scheduler looks
            self.send()
        self.scheduler.dispatch()

    def _unloaded(self, model: Model) -> None:
        model.status = "unloaded"
        self.ledger.drop(model_key(model.name))
        self.scheduler.dispatch()

    # -- the Admission protocol ------------------------------------------------------------
    def plan_need(self, ticket: Ticket) -> int | None:
        models = [self.models[name] for name in ticket.models]
        if any(m.status == "unloading" for m in models):
            return None
        return sum(m.nbytes for m in models if m.status == "unloaded")

    def missing(self, ticket: Ticket) -> frozenset[str]:
        gone = ("unloaded", "unloading")
        return frozenset(n for n in ticket.models if self.models[n].status in gone)

    def working(self) -> bool:
        return any(m.status == "loading" or m.refcount for m in self.models.values())

    def candidates(
        self, exclude: set[str], wanted: Collection[str], asked: Mapping[str, int]
    ) -> list[Candidate]:
        found = []
        for claim in self.ledger:
            model = self.models[model_name(claim.key) or ""]
            if claim.key in exclude or not claim.reclaimable:
                continue
            found.append(
                Candidate(
                    claim.key,
                    claim.nbytes,
                    claim.reclaim,
                    last_used=model.last_used,
                    reload_seconds=model.reload_s,
                    in_demand=claim.key in wanted,
                    recently_asked=asked.get(claim.key, 0),
                )
            )
        return found

    def ceiling(self, ticket: Ticket) -> int:
        return self.ledger.budget_bytes

    def grant(self, ticket: Ticket) -> None:
        for name in ticket.models:
            model = self.models[name]
            if model.status == "unloaded":
                claim = Claim(model_key(name), model.nbytes, Reclaim.EVICT, busy=model.busy)
                self.ledger.put(claim)
                model.status = "loading"
                self.loads += 1
                self.load_queue.append(model)
                if len(self.load_queue) == 1:  # one load at a time
                    self.at(self.timing.load_s, functools.partial(self._loaded, model))
            model.refcount += 1
            model.last_used = self.now
            model.lane.append(ticket)
            self._next(model)

    def ungrant(self, ticket: Ticket) -> None:
        raise AssertionError("no client of the replay goes away")

    def start_reclaim(self, key: str, for_whom: str) -> object:
        model = self.models[model_name(key) or ""]
        claim = self.ledger.get(key)
        assert claim is not None
        claim.reclaiming, model.status = True, "unloading"
        self.at(self.timing.unload_s, lambda: self._unloaded(model))
        return None

    def refusal(self, ticket: Ticket, need: int) -> ZooError:
        return ServiceBusy(f"{ticket.label} can never fit", {})

    def busy_error(self, ticket: Ticket, need: int) -> ZooError:
        return ServiceBusy(f"{ticket.label} is busy", {})


def replay(
    order: Sequence[str],
    sizes: dict[str, float],
    clients: int,
    max_wait_s: float,
    timing: Timing = Timing(),
    settle_s: float = SETTLE_S,
) -> dict[str, Any]:
    """Run `order` through the real scheduler on simulated time; loads, seconds, latencies."""

    async def inside_a_loop() -> dict[str, Any]:  # the scheduler's futures need one
        return Replay(order, sizes, clients, max_wait_s, settle_s).run(timing)

    return asyncio.run(inside_a_loop())


def ratios(
    seeds: Sequence[int],
    popularity: str,
    zoo: str,
    max_wait_s: float,
    timing: Timing = Timing(),
    requests: int = 240,
    clients: int = 8,
    settle_s: float = SETTLE_S,
) -> list[dict[str, Any]]:
    """Per seed: loads, the ideal's, and p99 (simulated seconds) of one replay."""
    sizes = dict(zip((f"owl-{i}" for i in range(4)), ZOOS[zoo], strict=True))
    rows = []
    for seed in seeds:
        order = sequence(sorted(sizes), requests, seed, popularity)
        result = replay(order, sizes, clients, max_wait_s, timing, settle_s)
        ideal = ideal_loads(order, sizes, BUDGET_MB, clients)
        latencies = sorted(result["latencies"])
        rows.append(
            {
                "seed": seed,
                "loads": result["loads"],
                "ideal": ideal,
                "ratio": result["loads"] / ideal,
                "p99_s": latencies[int(0.99 * (len(latencies) - 1))],
                "seconds": result["seconds"],
            }
        )
    return rows


def _seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-20", help="a seed or a range: 1-20")
    parser.add_argument("--max-wait-s", type=float, nargs="+", default=[1.0, 0.0])
    parser.add_argument("--load-s", type=float, nargs="+", default=[0.3, 1.0])
    parser.add_argument("--infer-s", type=float, default=Timing.infer_s)
    parser.add_argument("--rtt-s", type=float, default=Timing.rtt_s)
    parser.add_argument("--settle-s", type=float, default=SETTLE_S)
    args = parser.parse_args()
    print("| zoo | popularity | max_wait_s | load s | loads / ideal: mean (max) | p99 s | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for zoo, shape, cap, load_s in itertools.product(
        ZOOS, POPULARITY, args.max_wait_s, args.load_s
    ):
        timing = Timing(load_s=load_s, infer_s=args.infer_s, rtt_s=args.rtt_s)
        rows = ratios(_seeds(args.seeds), shape, zoo, cap, timing, settle_s=args.settle_s)
        mean = statistics.mean(r["ratio"] for r in rows)
        worst = max(r["ratio"] for r in rows)
        p99 = statistics.mean(r["p99_s"] for r in rows)
        wall = statistics.mean(r["seconds"] for r in rows)
        print(
            f"| {zoo} | {shape} | {cap:g} | {load_s:g} | {mean:.2f} ({worst:.2f}) "
            f"| {p99:.2f} | {wall:.1f} |"
        )


if __name__ == "__main__":
    main()
