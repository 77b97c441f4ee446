"""The request sequences bench/churn.py sends, and the ideal online schedule of each.

The ideal is what a scheduler that knows everything outstanding (but nothing of the future)
needs for the very sequence sent by `concurrency` closed-loop clients: requests for resident
models are served at once (inference costs nothing next to a load), and only when every
outstanding request waits on a missing model does it load one, one at a time: the missing
model most outstanding requests want, evicting resident models no outstanding request wants,
least recently used first, until it fits. Its load count is the yardstick the server's loads
are divided by (issue #18 item 2).
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Mapping, Sequence

#: Popularity of the models, by rank: "uniform", or "skewed" (Zipf, s = 1.5: with four models
#: one hot model takes ~60% of the requests, the long tail 21%, 12% and 8%).
POPULARITY = ("uniform", "skewed")
ZIPF_S = 1.5


def sequence(names: Sequence[str], requests: int, seed: int, popularity: str) -> list[str]:
    """`requests` model names drawn with `popularity` (see POPULARITY), seeded."""
    if popularity not in POPULARITY:
        raise ValueError(f"popularity must be one of {POPULARITY}, not {popularity!r}")
    rng = random.Random(seed)
    if popularity == "uniform":
        return [rng.choice(names) for _ in range(requests)]
    weights = [1 / rank**ZIPF_S for rank in range(1, len(names) + 1)]
    return rng.choices(list(names), weights=weights, k=requests)


def ideal_loads(
    order: Sequence[str], sizes: Mapping[str, float], budget: float, concurrency: int
) -> int:
    """Loads the ideal online scheduler needs for `order` sent by `concurrency` clients in a
    closed loop under `budget` (same unit as `sizes`). See the module docstring."""
    unsent = deque(order)
    outstanding: list[str] = []
    resident: dict[str, int] = {}  # model -> when last used (a step counter)
    loads = step = 0
    while unsent or outstanding:
        step = _serve_hits(unsent, outstanding, resident, concurrency, step)
        if not outstanding:
            break
        demand = Counter(outstanding)  # first asked wins a tie (Counter keeps that order)
        wanted = max(demand, key=lambda name: demand[name])
        while resident and sum(sizes[m] for m in resident) + sizes[wanted] > budget:
            del resident[min(resident, key=lambda name: resident[name])]  # none is wanted
        resident[wanted] = step
        loads += 1
    return loads


def _serve_hits(
    unsent: deque[str],
    outstanding: list[str],
    resident: dict[str, int],
    concurrency: int,
    step: int,
) -> int:
    """Serve every request whose model is resident, the clients sending again, until all
    outstanding ones wait on missing models; returns the step counter moved on."""
    while True:
        while unsent and len(outstanding) < concurrency:
            outstanding.append(unsent.popleft())
        hits = [name for name in outstanding if name in resident]
        if not hits:
            return step
        for name in hits:
            step += 1
            resident[name] = step
        outstanding[:] = [name for name in outstanding if name not in resident]
