"""Fleet simulation: Ray Serve's count-LRU model multiplexing vs zooserve's byte-aware policy.

A seeded, deterministic discrete-event simulation (pure Python, no Ray, no GPU) of one trace of
requests replayed against N replicas under each policy. Issue #13 item 5.

Models: the zoo's 23 enrichment models, the object-detection detectors (plus yolo11n-seg, the
detector of a ByteTrack tracker) and the SAM2-family trackers, as config/models.yaml has them.
Composite ByteTrack trackers hold no weights and are left out. Figures:

- size: the config's `vram_mb` (the repo's estimates; no real weights are on these machines).
  Checked where a measurement exists: OWLv2 base is 616 MB of safetensors (FACTS) vs 620.
- load seconds: DERIVED, 0.3 s + MB / 1.5 GB/s (disk to GPU). The one measured load in FACTS,
  OWLv2 base from a warm page cache on the CPU in ~0.5 s, is below the derived 0.71 s.
- service seconds (one request = a batch of ~16 frames or crops, on the GPU): DERIVED, base +
  seconds per GB by category (detection 0.03 + 0.5/GB, tracking 0.5 + 2/GB, other 0.02 +
  0.25/GB). The repo has no GPU inference measurements.

Trace: Poisson arrivals at `utilization` x N / mean service; each request names one model by
Zipf popularity (s = 1.1, ranks shuffled by the seed), or with probability `track_share` a plan
of two models held together: a SAM2-family tracker and a detector (each by Zipf). The same
trace runs under every policy for a given N. The first `WARMUP` of requests warm the caches
and are not counted.

Replicas: one GPU each, a 10 GiB MIG slice (1g.10gb of an A100/H100 80 GB): 9,216 MB for
weights (zooserve's auto budget, 90%), which is also where Ray's loads run out of memory. The
working set (~16.6 GB) does not fit one replica. One load at a time per replica (Ray's model
cache lock; zooserve serialises loads); one inference at a time per GPU (compute-bound work
time-slices, so concurrency 1 per model and per GPU); loads overlap inference. A replica takes
at most `max_ongoing_requests` = 5 (Ray's default) requests; unloads take no time.

Routing (both policies; Ray's PowerOfTwoChoicesRequestRouter with MultiplexMixin, read in
ray-project/ray python/ray/serve/_private/request_router/): for a request with a multiplexed
model id, the first attempt samples two replicas among those that hold the model (loaded or
loading: the replica pushes loading ids early) and sends it to the one with the shorter queue
that accepts it (queue < max_ongoing_requests). If there is no holder, or the holders refused,
later attempts use the replicas with the fewest models; after the matching timeout (uniform in
1-2 s) the fewest-models set once more, then all replicas. A failed attempt backs off 0, 0.025,
0.05 ... 0.5 s. Simplified: routing state is seen at once (Ray pushes it within 0.1 s) and each
request routes itself (Ray's FIFO hand-over of a found replica to the oldest pending request
is not modelled). zooserve keeps the mechanics and the holder preference (a plan: replicas
holding all its models, else any); its fallback is byte-aware: replicas where the plan fits
without evicting, else those with the fewest bytes in use.

(a) Ray (python/ray/serve/multiplex.py): a hit returns the model and moves it to the LRU end;
a miss takes the replica's load lock (FIFO), evicts the least recently used model if the
replica holds `max_num_models_per_replica`, whatever its size or use, and loads. Ray does not
know bytes: a load that does not fit fails as CUDA would (an OOM after the fraction of the load
that fit) and the client retries (3 tries in all). An evicted model still used by a request
keeps its memory until that request ends (PyTorch frees on the last reference). Two caps:
`budget / mean model size` (what an operator would set; out-of-memory possible) and
`budget / largest model` (few models per replica; no load ran out of memory in our runs).

(b) zooserve: the scheduler's rules (zooserve.manager.scheduler/policy, mirrored in
`decide` below and checked against the real one by tests/test_bench_fleet_sim.py): a plan is
admitted whole when its missing bytes fit; room is made by evicting idle models only (not
leased), in `reclaim_order`: expired keep-alive (5 min) first, then not in demand, then
GreedyDual's `last_used + reload seconds`. Swap-aware: a model used since the request arrived
is spared until the request has waited `max_wait_s` (1 s, the config default), so work for
resident models goes first; a later plan that fits may be admitted meanwhile. `zooserve-host`
adds the host tier (`host_memory_budget_mb`, assumed 8 GiB per replica): an evicted torch
model parks in pinned host memory (oldest parked go to disk) and wakes in 0.05 s + MB / 12 GB/s.

    .venv/bin/python bench/fleet_sim.py [--requests 40000] [--seed 1] [--json out/fleet.json]
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import json
import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zooserve.catalog import Config, load_config, parse_keep_alive

ROOT = Path(__file__).resolve().parents[1]

GPU_MB = 10240
BUDGET_SHARE = 0.9
DISK_MB_PER_S, LOAD_FIXED_S = 1500.0, 0.3
HOST_MB, PCIE_MB_PER_S, WAKE_FIXED_S = 8192.0, 12000.0, 0.05  # the host tier (zooserve-host)
SERVICE = {"detection": (0.03, 0.5), "tracking": (0.5, 2.0)}  # (base s, s per GB)
OTHER_SERVICE = (0.02, 0.25)
MAX_ONGOING = 5  # Ray Serve's default max_ongoing_requests
MATCH_TIMEOUT_S = 1.0  # RAY_SERVE_MULTIPLEXED_MODEL_ID_MATCHING_TIMEOUT_S (drawn in [1, 2))
BACKOFF_S, BACKOFF_MAX_S = 0.025, 0.5
TRIES = 3
WARMUP = 0.2
REPLICAS = (1, 4, 16, 100)
POLICIES = ("ray-lru-mean", "ray-lru-largest", "zooserve", "zooserve-host")
_NOT_ZOO = {"tracking", "summarization", "ontology"}
_NOT_ZOO_FAMILIES = {"local_llm", "sentence_transformers", "detection_tracker"}


@dataclass(frozen=True)
class Model:
    name: str
    kind: str  # zoo | detector | tracker | concept (a tracker that needs no detector)
    mb: float
    load_s: float
    service_s: float
    parkable: bool = False  # torch weights: can park in pinned host memory
    wake_s: float = 0.0  # back from the host tier


def fleet_models(config: Config) -> dict[str, Model]:
    """Zoo models (as zooserve_bench.zoo.zoo_models picks them), detectors, SAM2 trackers."""
    specs = config.models
    tasks = config.tasks
    detectors = list(tasks["object_detection"].options)
    trackers, concept_trackers = [], []
    for name in tasks["video_tracking"].options:
        detector = specs[name].options.get("detector")
        if specs[name].family == "sam3_tracker":
            concept_trackers.append(name)  # finds its own objects from text: no detector beside it
        elif detector:
            detectors.append(detector)  # a ByteTrack tracker is its detector plus no weights
        else:
            trackers.append(name)
    in_tasks = {name for spec in tasks.values() for name in spec.options}
    zoo = [t.model for t in config.zoo.triggers] + [
        name
        for name, spec in specs.items()
        if name not in in_tasks
        and name not in detectors
        and spec.category not in _NOT_ZOO
        and spec.framework not in ("sglang", "vllm")
        and spec.family not in _NOT_ZOO_FAMILIES
    ]
    kinds = {n: "tracker" for n in trackers} | {n: "detector" for n in detectors}
    kinds |= {n: "concept" for n in concept_trackers}
    kinds |= {n: "zoo" for n in zoo}  # mtcnn-face: a zoo model that also detects
    models = {}
    for name, kind in kinds.items():
        spec = specs[name]
        mb = spec.vram_mb or 0.0
        if mb <= 0 or not spec.enabled:
            continue
        base, per_gb = SERVICE.get(spec.category, OTHER_SERVICE)
        load_s = LOAD_FIXED_S + mb / DISK_MB_PER_S
        service_s = base + per_gb * mb / 1e3
        parkable = spec.framework not in ("onnx", "opencv")
        wake_s = WAKE_FIXED_S + mb / PCIE_MB_PER_S
        models[name] = Model(name, kind, mb, load_s, service_s, parkable, wake_s)
    return models


# --- trace -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Request:
    id: int
    arrival: float
    models: tuple[str, ...]
    service_s: float
    tries: int = 0
    first_try: float = 0.0
    timeout_s: float = MATCH_TIMEOUT_S
    tried_holders: bool = False
    tried_fallback: bool = False
    routes: int = 0
    replica: int = -1
    hit: bool = False
    waiting: int = 0  # models it still waits for (loads)
    held: list[Any] = field(default_factory=list)  # Ray: model copies it holds
    enqueued: float = 0.0


def make_trace(
    models: dict[str, Model],
    requests: int,
    replicas: int,
    seed: int,
    zipf_s: float = 1.1,
    track_share: float = 0.1,
    utilization: float = 0.6,
) -> list[Request]:
    """Poisson arrivals, Zipf popularity; the rate keeps the GPUs `utilization` busy on average."""
    rng = random.Random(seed)

    def zipf(kind: Iterable[str]) -> tuple[list[str], list[float]]:
        names = sorted(n for n, m in models.items() if m.kind in kind)
        rng.shuffle(names)
        weights = list(itertools.accumulate(1 / (k + 1) ** zipf_s for k in range(len(names))))
        return names, weights

    singles, trackers, detectors = (
        zipf({"zoo", "detector", "concept"}),
        zipf({"tracker"}),
        zipf({"detector"}),
    )

    def mean(pool: tuple[list[str], list[float]]) -> float:
        names, cum = pool
        weights = [b - a for a, b in zip([0.0, *cum], cum, strict=False)]
        return sum(models[n].service_s * w for n, w in zip(names, weights, strict=True)) / cum[-1]

    mean_s = (1 - track_share) * mean(singles) + track_share * (mean(trackers) + mean(detectors))
    rate = utilization * replicas / mean_s

    def draw(pool: tuple[list[str], list[float]]) -> str:
        names, cum = pool
        return names[bisect.bisect_left(cum, rng.random() * cum[-1])]

    trace, now = [], 0.0
    for i in range(requests):
        now += rng.expovariate(rate)
        plan = (draw(trackers), draw(detectors)) if rng.random() < track_share else (draw(singles),)
        trace.append(Request(i, now, plan, sum(models[m].service_s for m in plan)))
    return trace


# --- zooserve's admission rules (mirrors zooserve.manager.policy) ----------------------------


@dataclass(frozen=True)
class Candidate:
    key: str
    nbytes: float
    expired: bool
    last_used: float
    reload_seconds: float
    in_demand: bool


def reclaim_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Expired first, then not in demand, then GreedyDual's `last_used + reload_seconds`."""
    return sorted(
        candidates, key=lambda c: (not c.expired, c.in_demand, c.last_used + c.reload_seconds)
    )


def _victims(short: float, candidates: Sequence[Candidate]) -> list[Candidate] | None:
    victims = []
    for candidate in reclaim_order(candidates):
        if short <= 0:
            break
        victims.append(candidate)
        short -= candidate.nbytes
    return victims if short <= 0 else None


def decide(
    need: float,
    free: float,
    candidates: Sequence[Candidate],
    ceiling: float,
    overdue: bool,
) -> tuple[str, list[Candidate], bool]:
    """(verdict, victims, deferred) as zooserve.manager.policy.decide with nothing incoming."""
    if need > ceiling:
        return "refuse", [], False
    if need <= free:
        return "admit", [], False
    short = need - free
    victims = _victims(short, [c for c in candidates if overdue or not c.in_demand])
    if victims is not None:
        return "reclaim", victims, False
    deferred = not overdue and _victims(short, candidates) is not None
    return "wait", [], deferred


# --- the simulation --------------------------------------------------------------------------


class Sim:
    """The event loop, the router and the counters of one run (one policy, N replicas)."""

    def __init__(
        self,
        models: dict[str, Model],
        policy: str,
        replicas: int,
        budget_mb: float,
        seed: int,
        keep_alive_s: float,
        max_wait_s: float,
    ) -> None:
        self.models, self.policy, self.budget = models, policy, budget_mb
        sizes = [m.mb for m in models.values()]
        per_model = max(sizes) if policy == "ray-lru-largest" else sum(sizes) / len(sizes)
        self.cap = int(budget_mb // per_model)  # Ray's max_num_models_per_replica
        self.keep_alive_s, self.max_wait_s = keep_alive_s, max_wait_s
        self.host_mb = HOST_MB if policy == "zooserve-host" else 0.0
        self.rng = random.Random(seed + 7919)  # routing draws, apart from the trace's
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.holders: dict[str, set[int]] = {m: set() for m in models}
        kind = RayReplica if policy.startswith("ray") else ZooReplica
        self.replicas: list[Replica] = [kind(self, i) for i in range(replicas)]
        self.outcome: dict[int, str] = {}
        self.latency: dict[int, float] = {}
        self.hit: dict[int, bool] = {}
        self.load_times: list[float] = []  # from disk
        self.wake_times: list[float] = []  # from the host tier
        self.oom_times: list[float] = []
        self.evictions = self.expired = 0

    def at(self, when: float, action: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._events, (when, next(self._seq), action, args))

    def run(self, trace: Sequence[Request]) -> None:
        for request in trace:
            self.at(request.arrival, self.start, request)
        while self._events:
            self.now, _, action, args = heapq.heappop(self._events)
            action(*args)

    # routing (Ray's power of two choices with multiplexing; see the module docstring)

    def start(self, request: Request) -> None:
        request.tries += 1
        request.first_try, request.routes = self.now, 0
        request.timeout_s = MATCH_TIMEOUT_S * (1 + self.rng.random())
        request.tried_holders = request.tried_fallback = False
        self.route(request)

    def route(self, request: Request) -> None:
        candidates = self._candidates(request)
        picks = self.rng.sample(candidates, 2) if len(candidates) > 1 else candidates
        open_ = [i for i in picks if self.replicas[i].ongoing < MAX_ONGOING]
        if not open_:
            request.routes += 1
            wait = 0.0 if request.routes == 1 else BACKOFF_S * 2 ** (request.routes - 2)
            self.at(self.now + min(wait, BACKOFF_MAX_S), self.route, request)
            return
        replica = self.replicas[min(open_, key=lambda i: self.replicas[i].ongoing)]
        request.replica = replica.index
        replica.ongoing += 1
        replica.submit(request)

    def _candidates(self, request: Request) -> list[int]:
        if self.now - request.first_try < request.timeout_s:
            if not request.tried_holders:
                request.tried_holders = True
                held = self._holding(request.models)
                if held:
                    return held
            return self._fallback(request.models)
        if not request.tried_fallback:
            request.tried_fallback = True
            return self._fallback(request.models)
        return list(range(len(self.replicas)))

    def _holding(self, plan: tuple[str, ...]) -> list[int]:
        if self.policy.startswith("ray"):  # one multiplexed model id: the plan's first
            return sorted(self.holders[plan[0]])
        sets = [self.holders[m] for m in plan]
        return sorted(set.intersection(*sets) or set.union(*sets))

    def _fallback(self, plan: tuple[str, ...]) -> list[int]:
        if self.policy.startswith("ray"):  # the replicas with the fewest models
            counts = [len(r.advertised) for r in self.replicas]
            return [i for i, c in enumerate(counts) if c == min(counts)]
        fits = [i for i, r in enumerate(self.replicas) if self.budget - r.used >= r.need(plan)]
        if fits:
            return fits
        used = [r.used for r in self.replicas]
        return [i for i, u in enumerate(used) if u == min(used)]

    # outcomes

    def finish(self, request: Request) -> None:
        assert request.id not in self.outcome, f"request {request.id} ended twice"
        self.outcome[request.id] = "served"
        self.latency[request.id] = self.now - request.arrival
        self.hit[request.id] = request.hit

    def failed_try(self, request: Request) -> None:
        """A load ran out of memory: the client tries again, `TRIES` times in all."""
        if request.tries < TRIES:
            self.start(request)
        else:
            assert request.id not in self.outcome, f"request {request.id} ended twice"
            self.outcome[request.id] = "failed"


class Replica:
    """One GPU: a FIFO of requests whose models are ready, one inference at a time."""

    advertised: set[str]

    def __init__(self, sim: Sim, index: int) -> None:
        self.sim, self.index = sim, index
        self.ongoing = 0
        self.used = self.peak_used = 0.0
        self.loads = 0
        self.served_models: set[str] = set()
        self._ready: deque[Request] = deque()
        self._busy = False

    def submit(self, request: Request) -> None:
        raise NotImplementedError

    def release(self, request: Request) -> None:
        raise NotImplementedError

    def need(self, plan: tuple[str, ...]) -> float:
        return 0.0

    def ready(self, request: Request) -> None:
        self._ready.append(request)
        self._next_inference()

    def _next_inference(self) -> None:
        if not self._busy and self._ready:
            request = self._ready.popleft()
            self._busy = True
            self.sim.at(self.sim.now + request.service_s, self._inferred, request)

    def _inferred(self, request: Request) -> None:
        self._busy = False
        self.ongoing -= 1
        self.served_models.update(request.models)
        self.release(request)
        self.sim.finish(request)
        self._next_inference()

    def _use(self, mb: float) -> None:
        self.used += mb
        self.peak_used = max(self.peak_used, self.used)

    def _count_load(self, wake: bool = False) -> None:
        self.loads += 1
        (self.sim.wake_times if wake else self.sim.load_times).append(self.sim.now)

    def _advertise(self, model: str, on: bool) -> None:
        """Routing state: whether this replica holds (or is loading) `model`."""
        holders = self.sim.holders[model]
        if on:
            holders.add(self.index)
            self.advertised.add(model)
        else:
            holders.discard(self.index)
            self.advertised.discard(model)


@dataclass(eq=False)
class Copy:
    """A model object on a Ray replica; memory is freed when it is out of the cache and no
    request holds it any more."""

    name: str
    mb: float
    refs: int = 0
    cached: bool = True


class RayReplica(Replica):
    """Ray's _ModelMultiplexWrapper: an OrderedDict LRU by count, one load under a lock."""

    def __init__(self, sim: Sim, index: int) -> None:
        super().__init__(sim, index)
        self.cache: OrderedDict[str, Copy] = OrderedDict()
        self.load_tasks: set[str] = set()
        self.advertised = set()
        self.peak_count = 0
        self._lock_queue: deque[tuple[Request, int]] = deque()
        self._locked = self._pumping = False

    def submit(self, request: Request) -> None:
        request.hit = all(m in self.cache for m in request.models)
        request.held = []
        self._get(request, 0)

    def _get(self, request: Request, start: int) -> None:
        """`load_model` for each model of the request in turn, then its inference."""
        for i in range(start, len(request.models)):
            name = request.models[i]
            if name not in self.cache:
                self.load_tasks.add(name)
                self._advertise(name, True)
                self._lock_queue.append((request, i))
                self._pump()
                return
            self.cache.move_to_end(name)
            self._hold(request, self.cache[name])
        self.ready(request)

    def _hold(self, request: Request, copy: Copy) -> None:
        copy.refs += 1
        request.held.append(copy)

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        while not self._locked and self._lock_queue:
            request, i = self._lock_queue.popleft()
            name = request.models[i]
            if name in self.cache:  # loaded meanwhile by the request ahead of it
                self.cache.move_to_end(name)
                self._hold(request, self.cache[name])
                self._get(request, i + 1)
                continue
            self._locked = True
            if 0 < self.sim.cap <= len(self.cache):
                self._evict_lru()
            model, room = self.sim.models[name], self.sim.budget - self.used
            self._count_load()
            if model.mb > room:  # CUDA out of memory once the room is filled
                self.sim.oom_times.append(self.sim.now)
                fail_at = self.sim.now + model.load_s * max(0.0, room) / model.mb
                self.sim.at(fail_at, self._out_of_memory, request, i)
            else:
                copy = Copy(name, model.mb)
                self._use(model.mb)
                self.sim.at(self.sim.now + model.load_s, self._loaded, request, i, copy)
        self._pumping = False

    def _evict_lru(self) -> None:
        name, copy = self.cache.popitem(last=False)
        copy.cached = False
        if copy.refs == 0:
            self._use(-copy.mb)
        self._advertise(name, name in self.load_tasks)
        self.sim.evictions += 1

    def _loaded(self, request: Request, i: int, copy: Copy) -> None:
        self.cache[copy.name] = copy
        self.peak_count = max(self.peak_count, len(self.cache))
        self.load_tasks.discard(copy.name)
        self._locked = False
        self._hold(request, copy)
        self._get(request, i + 1)
        self._pump()

    def _out_of_memory(self, request: Request, i: int) -> None:
        name = request.models[i]
        self.load_tasks.discard(name)
        self._advertise(name, name in self.cache)
        self._locked = False
        self.ongoing -= 1
        self.release(request)
        self._pump()
        self.sim.failed_try(request)

    def release(self, request: Request) -> None:
        for copy in request.held:
            copy.refs -= 1
            if copy.refs == 0 and not copy.cached:
                self._use(-copy.mb)
        request.held = []


@dataclass(eq=False)
class Slot:
    """A model claim on a zooserve replica: loading or loaded, leased by `leases` requests."""

    name: str
    mb: float
    loaded: bool = False
    leases: int = 0
    last_used: float = 0.0
    timer: bool = False
    woken: bool = False  # its load is a wake from the host tier
    waiters: list[Request] = field(default_factory=list)


class ZooReplica(Replica):
    """zooserve's scheduler: whole plans admitted by bytes, idle models evicted by policy."""

    def __init__(self, sim: Sim, index: int) -> None:
        super().__init__(sim, index)
        self.slots: dict[str, Slot] = {}
        self.parked: OrderedDict[str, float] = OrderedDict()  # host tier, oldest first
        self.advertised = set()
        self._queue: list[Request] = []
        self._loads: deque[str] = deque()
        self._loading = self._dispatching = self._again = False
        self._wake_at = float("inf")

    def need(self, plan: tuple[str, ...]) -> float:
        return sum(self.sim.models[m].mb for m in set(plan) if m not in self.slots)

    def submit(self, request: Request) -> None:
        request.hit = all(m in self.slots and self.slots[m].loaded for m in request.models)
        request.enqueued = self.sim.now
        self._queue.append(request)
        self.dispatch()

    def dispatch(self) -> None:
        """Passes over the queue until nothing changes (as Scheduler.dispatch)."""
        if self._dispatching:
            self._again = True
            return
        self._dispatching = self._again = True
        while self._again:
            self._again = False
            self._pass()
        self._dispatching = False

    def _pass(self) -> None:
        sim, now = self.sim, self.sim.now
        for request in list(self._queue):
            overdue = now - request.enqueued >= sim.max_wait_s - 1e-9
            candidates = [
                Candidate(
                    s.name,
                    s.mb,
                    now - s.last_used >= sim.keep_alive_s - 1e-9,
                    s.last_used,
                    sim.models[s.name].load_s,
                    in_demand=s.last_used > request.enqueued,
                )
                for s in self.slots.values()
                if s.leases == 0 and s.name not in request.models
            ]
            need = self.need(request.models)
            verdict, victims, deferred = decide(
                need, sim.budget - self.used, candidates, sim.budget, overdue
            )
            assert verdict != "refuse", f"{request.models} can never fit {sim.budget} MB"
            for victim in victims:  # unloads take no time: the plan fits at once
                self._unload(victim.key)
                sim.evictions += 1
            if verdict in ("admit", "reclaim"):
                self._queue.remove(request)
                self._grant(request)
            elif deferred:  # work for resident models goes first, up to max_wait_s
                self._wake(request.enqueued + sim.max_wait_s)

    def _wake(self, when: float) -> None:
        if when < self._wake_at:
            self._wake_at = when
            self.sim.at(when, self._woken, when)

    def _woken(self, when: float) -> None:
        if when == self._wake_at:
            self._wake_at = float("inf")
            self.dispatch()

    def _grant(self, request: Request) -> None:
        request.waiting = 0
        for name in dict.fromkeys(request.models):
            slot = self.slots.get(name)
            if slot is None:
                slot = self.slots[name] = Slot(name, self.sim.models[name].mb)
                slot.woken = self.parked.pop(name, None) is not None
                self._use(slot.mb)
                self._advertise(name, True)
                self._loads.append(name)
            slot.leases += 1
            slot.last_used = self.sim.now
            if not slot.loaded:
                slot.waiters.append(request)
                request.waiting += 1
        if request.waiting == 0:
            self.ready(request)
        self._next_load()

    def _next_load(self) -> None:
        if not self._loading and self._loads:
            name = self._loads.popleft()
            model, woken = self.sim.models[name], self.slots[name].woken
            self._loading = True
            self._count_load(woken)
            self.sim.at(
                self.sim.now + (model.wake_s if woken else model.load_s), self._loaded, name
            )

    def _loaded(self, name: str) -> None:
        slot = self.slots[name]
        slot.loaded, self._loading = True, False
        for request in slot.waiters:
            request.waiting -= 1
            if request.waiting == 0:
                self.ready(request)
        slot.waiters = []
        self._next_load()

    def release(self, request: Request) -> None:
        for name in dict.fromkeys(request.models):
            slot = self.slots[name]
            slot.leases -= 1
            slot.last_used = self.sim.now
            if slot.leases == 0 and not slot.timer:
                slot.timer = True
                self.sim.at(self.sim.now + self.sim.keep_alive_s, self._expire, slot)
        self.dispatch()

    def _expire(self, slot: Slot) -> None:
        """Keep-alive: an idle model is unloaded once it has not been used for keep_alive_s."""
        slot.timer = False
        if self.slots.get(slot.name) is not slot or slot.leases:
            return
        due = slot.last_used + self.sim.keep_alive_s
        if self.sim.now < due - 1e-9:
            slot.timer = True
            self.sim.at(due, self._expire, slot)
            return
        self._unload(slot.name)
        self.sim.expired += 1
        self.dispatch()

    def _unload(self, name: str) -> None:
        """Out of the GPU: parked in the host tier if it has one (oldest parked go to disk)."""
        slot = self.slots.pop(name)
        self._use(-slot.mb)
        self._advertise(name, False)
        if self.sim.models[name].parkable and 0 < slot.mb <= self.sim.host_mb:
            self.parked[name] = slot.mb
            while sum(self.parked.values()) > self.sim.host_mb:
                self.parked.popitem(last=False)


# --- runs and report -------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


def _finite(value: float) -> float | None:
    """None where the percentile falls among failed requests (JSON has no infinity)."""
    return None if math.isinf(value) else value


def simulate(
    models: dict[str, Model],
    policy: str,
    replicas: int,
    requests: int,
    seed: int = 1,
    gpu_mb: float = GPU_MB,
    keep_alive_s: float = 300.0,
    max_wait_s: float = 1.0,
    **trace_options: float,
) -> tuple[Sim, list[Request]]:
    """One run; the trace depends on (models, requests, replicas, seed, trace_options) only."""
    trace = make_trace(models, requests, replicas, seed, **trace_options)
    sim = Sim(models, policy, replicas, gpu_mb * BUDGET_SHARE, seed, keep_alive_s, max_wait_s)
    sim.run(trace)
    return sim, trace


def summarize(sim: Sim, trace: Sequence[Request]) -> dict[str, Any]:
    """Figures over the requests after the warm-up (and the loads from their first arrival)."""
    counted = trace[int(len(trace) * WARMUP) :]
    since = counted[0].arrival
    served = [r.id for r in counted if sim.outcome[r.id] == "served"]
    latency = [sim.latency.get(r.id, math.inf) for r in counted]  # failed: never served
    per_1k = 1000 / len(counted)
    return {
        "replicas": len(sim.replicas),
        "policy": sim.policy,
        "max_models": sim.cap if sim.policy.startswith("ray") else None,
        "requests": len(counted),
        "hit_rate": sum(sim.hit[i] for i in served) / max(1, len(served)),
        "loads_per_1k": sum(t >= since for t in sim.load_times) * per_1k,
        "wakes_per_1k": sum(t >= since for t in sim.wake_times) * per_1k,
        "oom_per_1k": sum(t >= since for t in sim.oom_times) * per_1k,
        "failed": len(counted) - len(served),
        "p50_s": _finite(_percentile(latency, 0.50)),
        "p99_s": _finite(_percentile(latency, 0.99)),
    }


def run(
    requests: int, seed: int, replica_counts: Sequence[int] = REPLICAS, **options: Any
) -> dict[str, Any]:
    config = load_config(ROOT / "config" / "models.yaml")
    models = fleet_models(config)
    keep_alive = parse_keep_alive(config.default_keep_alive) or float("inf")
    rows = []
    for replicas in replica_counts:
        for policy in POLICIES:
            sim, trace = simulate(
                models,
                policy,
                replicas,
                requests,
                seed,
                keep_alive_s=keep_alive,
                max_wait_s=config.max_wait_s,
                **options,
            )
            rows.append(summarize(sim, trace))
    kinds = {k: sum(m.kind == k for m in models.values()) for k in ("zoo", "detector", "tracker")}
    setup = {
        "models": kinds,
        "total_mb": sum(m.mb for m in models.values()),
        "budget_mb": options.get("gpu_mb", GPU_MB) * BUDGET_SHARE,
        "requests": requests,
        "warmup": WARMUP,
        "seed": seed,
        "keep_alive_s": keep_alive,
        "max_wait_s": config.max_wait_s,
    }
    return {"setup": setup, "rows": rows}


_LABELS = {
    "ray-lru-mean": "Ray count-LRU, max {cap} (budget / mean model)",
    "ray-lru-largest": "Ray count-LRU, max {cap} (budget / largest model)",
    "zooserve": "zooserve: bytes, idle-only eviction, swap-aware",
    "zooserve-host": "zooserve + host tier ({host} MB pinned)",
}


def _seconds(value: float | None) -> str:
    return "failed" if value is None else f"{value:.2f}"


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| N | policy | hit rate | disk loads / 1k | host wakes / 1k | OOM loads / 1k | failed "
        "| p50 s | p99 s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        label = _LABELS[r["policy"]].format(cap=r["max_models"], host=f"{HOST_MB:.0f}")
        lines.append(
            f"| {r['replicas']} | {label} | {r['hit_rate']:.1%} | {r['loads_per_1k']:.1f} | "
            f"{r['wakes_per_1k']:.1f} | {r['oom_per_1k']:.1f} | {r['failed']} | "
            f"{_seconds(r['p50_s'])} | {_seconds(r['p99_s'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40000, help="per N and policy")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replicas", type=int, nargs="+", default=list(REPLICAS))
    parser.add_argument("--gpu-mb", type=float, default=GPU_MB, help="90%% is the budget")
    parser.add_argument("--utilization", type=float, default=0.6, help="of the GPUs, on average")
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--track-share", type=float, default=0.1)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    report = run(
        args.requests,
        args.seed,
        args.replicas,
        gpu_mb=args.gpu_mb,
        utilization=args.utilization,
        zipf_s=args.zipf,
        track_share=args.track_share,
    )
    setup = report["setup"]
    print(
        f"models {setup['models']} ({setup['total_mb']:.0f} MB), budget {setup['budget_mb']:.0f}"
        f" MB per replica, {args.requests} requests per run ({WARMUP:.0%} warm-up), "
        f"seed {args.seed}\n"
    )
    print(markdown(report["rows"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
