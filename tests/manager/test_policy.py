"""The admission policy (zooserve.manager.policy) as tables of cases, and properties over
random inputs: `decide` admits iff the request fits now, refuses iff it could never fit,
and reclaims only the fewest victims, in `reclaim_order`, that make it fit; `serve_order`
puts urgent, then overdue plans first, then the most wanted missing models."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zooserve.manager.claims import Reclaim
from zooserve.manager.policy import (
    Candidate,
    Decision,
    Verdict,
    Waiting,
    decide,
    reclaim_order,
    serve_order,
    swap_at,
)


def idle(key: str, nbytes: int, **kw: Any) -> Candidate:
    return Candidate(key, nbytes, Reclaim.EVICT, **kw)


OLD = idle("old", 4, last_used=1.0)
RECENT = idle("recent", 4, last_used=9.0)
EXPIRED = idle("expired", 4, expired=True, last_used=5.0)
SLOW = idle("slow", 4, last_used=3.0, reload_seconds=20.0)  # counts as used at 23
QUICK = idle("quick", 4, last_used=3.0, reload_seconds=0.5)  # counts as used at 3.5
SLOW_OLD = idle("slow_old", 4, last_used=1.0, reload_seconds=10.0)  # counts as used at 11
SMALL = idle("small", 1, last_used=2.0)
TWO_A = idle("two_a", 2, last_used=1.0)
TWO_B = idle("two_b", 2, last_used=2.0)
TWO_C = idle("two_c", 2, last_used=3.0)
WANTED = idle("wanted", 4, last_used=0.0, in_demand=True)  # a queued plan needs it
# Issue #18's scenario: every client waits on a missing model; the two resident models were
# used since those requests arrived, but no queued request wants them.
USED_SINCE_A = idle("resident_a", 4, last_used=9.0)
USED_SINCE_B = idle("resident_b", 4, last_used=9.5)
ENGINE = Candidate("engine:vllm", 6, Reclaim.SLEEP, last_used=4.0)

# (case, need, free, incoming, candidates, ceiling, overdue, verdict, victim keys, deferred)
CASES: list[tuple[Any, ...]] = [
    ("fits: admit", 2, 3, 0, [OLD], 10, True, Verdict.ADMIT, (), False),
    ("fits exactly: admit", 3, 3, 0, [], 10, True, Verdict.ADMIT, (), False),
    ("nothing needed: admit", 0, 0, 0, [], 0, True, Verdict.ADMIT, (), False),
    ("above the ceiling: refuse", 11, 20, 0, [OLD], 10, True, Verdict.REFUSE, (), False),
    (
        "above the ceiling though victims exist: refuse",
        9,
        0,
        0,
        [OLD, RECENT],
        8,
        True,
        Verdict.REFUSE,
        (),
        False,
    ),
    (
        "at the ceiling: not refused",
        8,
        0,
        0,
        [OLD, RECENT],
        8,
        True,
        Verdict.RECLAIM,
        ("old", "recent"),
        False,
    ),
    ("room on its way: wait, no new victims", 5, 2, 3, [OLD], 10, True, Verdict.WAIT, (), False),
    ("more than enough on its way: wait", 5, 0, 9, [OLD], 10, True, Verdict.WAIT, (), False),
    (
        "room on its way covers part: reclaim only the rest",
        6,
        1,
        4,
        [OLD, SMALL],
        10,
        True,
        Verdict.RECLAIM,
        ("old",),
        False,
    ),
    (
        "busy claims hold the room: wait, evict nothing",
        9,
        1,
        0,
        [OLD],
        10,
        True,
        Verdict.WAIT,
        (),
        False,
    ),
    ("no candidates at all: wait", 2, 1, 0, [], 10, True, Verdict.WAIT, (), False),
    ("expired goes first", 3, 0, 0, [OLD, EXPIRED], 10, True, Verdict.RECLAIM, ("expired",), False),
    (
        "then least recently used",
        3,
        0,
        0,
        [RECENT, OLD],
        10,
        True,
        Verdict.RECLAIM,
        ("old",),
        False,
    ),
    (
        "the cheaper reload goes first",
        3,
        0,
        0,
        [SLOW, QUICK],
        10,
        True,
        Verdict.RECLAIM,
        ("quick",),
        False,
    ),
    (
        "a slow reload counts as used that much later",
        3,
        0,
        0,
        [SLOW_OLD, RECENT],
        10,
        True,
        Verdict.RECLAIM,
        ("recent",),
        False,
    ),
    (
        "an idle engine is slept like a model is evicted",
        5,
        0,
        0,
        [RECENT, ENGINE],
        10,
        True,
        Verdict.RECLAIM,
        ("engine:vllm",),
        False,
    ),
    (
        "stops as soon as it fits: the fewest victims",
        4,
        0,
        0,
        [TWO_C, TWO_B, TWO_A],
        10,
        True,
        Verdict.RECLAIM,
        ("two_a", "two_b"),
        False,
    ),
    (
        "free room counts: one victim is enough",
        5,
        1,
        0,
        [OLD, RECENT],
        10,
        True,
        Verdict.RECLAIM,
        ("old",),
        False,
    ),
    (
        "all of them when all are needed",
        6,
        0,
        0,
        [TWO_C, TWO_A, TWO_B],
        10,
        True,
        Verdict.RECLAIM,
        ("two_a", "two_b", "two_c"),
        False,
    ),
    (
        "in demand is spared until the request is overdue",
        3,
        0,
        0,
        [WANTED],
        10,
        False,
        Verdict.WAIT,
        (),
        True,
    ),
    (
        "in demand goes once the request is overdue",
        3,
        0,
        0,
        [WANTED],
        10,
        True,
        Verdict.RECLAIM,
        ("wanted",),
        False,
    ),
    (
        "not in demand goes before in demand, even if used later",
        3,
        0,
        0,
        [WANTED, RECENT],
        10,
        True,
        Verdict.RECLAIM,
        ("recent",),
        False,
    ),
    (
        "not overdue: the claims not in demand suffice",
        3,
        0,
        0,
        [WANTED, RECENT],
        10,
        False,
        Verdict.RECLAIM,
        ("recent",),
        False,
    ),
    (
        "issue #18: residents used since, wanted by no queued request, swap at once",
        4,
        0,
        0,
        [USED_SINCE_B, USED_SINCE_A],
        8,
        False,
        Verdict.RECLAIM,
        ("resident_a",),
        False,
    ),
    (
        "not overdue, nothing would suffice: a plain wait",
        30,
        0,
        0,
        [WANTED],
        40,
        False,
        Verdict.WAIT,
        (),
        False,
    ),
]


@pytest.mark.parametrize(
    (
        "need",
        "free",
        "incoming",
        "candidates",
        "ceiling",
        "overdue",
        "verdict",
        "victims",
        "deferred",
    ),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_decide(
    need: int,
    free: int,
    incoming: int,
    candidates: list[Candidate],
    ceiling: int,
    overdue: bool,
    verdict: Verdict,
    victims: tuple[str, ...],
    deferred: bool,
) -> None:
    decision = decide(need, free, incoming, candidates, ceiling, overdue)
    assert decision.verdict is verdict
    assert tuple(v.key for v in decision.victims) == victims
    assert decision.deferred is deferred


def test_reclaim_order() -> None:
    """Expired first, then not in demand, then least recently used, a claim counting as used
    as many seconds later as its reload takes."""
    ordered = reclaim_order([RECENT, SLOW, WANTED, OLD, QUICK, EXPIRED, SMALL])
    assert [c.key for c in ordered] == [
        "expired",
        "old",
        "small",
        "quick",
        "recent",
        "slow",
        "wanted",
    ]


def test_recent_asks_multiply_the_reload_cost() -> None:
    """Issue #18, skewed popularity (GreedyDual-Size-Frequency): the hot model, idle for a
    moment when a swap is decided, was used longer ago than a tail model, but recent requests
    asked for it 20 times: it counts as used at 1 + 20 x 1 s, the tail model at 9 + 2 x 1 s,
    so the tail model goes. An engine no plan asks for by name counts as asked once (its old
    GreedyDual priority); in-demand and expired claims keep their places."""
    hot = idle("hot", 4, last_used=1.0, reload_seconds=1.0, recently_asked=20)  # 21
    tail = idle("tail", 4, last_used=9.0, reload_seconds=1.0, recently_asked=2)  # 11
    engine = Candidate("engine:vllm", 6, Reclaim.SLEEP, last_used=4.0, reload_seconds=3.0)  # 7
    wanted_hot = idle("wanted", 4, last_used=0.0, in_demand=True, recently_asked=0)
    stale = idle("stale", 4, expired=True, last_used=5.0, recently_asked=30)
    ordered = reclaim_order([hot, wanted_hot, tail, engine, stale])
    assert [c.key for c in ordered] == ["stale", "engine:vllm", "tail", "hot", "wanted"]
    assert engine.kept_until == 7.0 and hot.kept_until == 21.0


def test_an_expired_claim_goes_before_an_older_one_that_is_not() -> None:
    stale = idle("stale", 1, expired=True, last_used=100.0, reload_seconds=9.0)
    assert [c.key for c in reclaim_order([OLD, stale])] == ["stale", "old"]


candidates = st.lists(
    st.builds(
        Candidate,
        key=st.text("abcdefgh", min_size=1, max_size=3),
        nbytes=st.integers(1, 50),
        how=st.sampled_from([Reclaim.EVICT, Reclaim.SLEEP]),
        expired=st.booleans(),
        last_used=st.integers(0, 5).map(float),
        reload_seconds=st.integers(0, 3).map(float),
        in_demand=st.booleans(),
        recently_asked=st.integers(0, 3),
    ),
    max_size=6,
)


@settings(max_examples=300, derandomize=True, database=None)
@given(
    need=st.integers(0, 120),
    free=st.integers(0, 100),
    incoming=st.integers(0, 60),
    candidates=candidates,
    ceiling=st.integers(0, 150),
    overdue=st.booleans(),
)
def test_decide_property(
    need: int,
    free: int,
    incoming: int,
    candidates: list[Candidate],
    ceiling: int,
    overdue: bool,
) -> None:
    decision: Decision = decide(need, free, incoming, candidates, ceiling, overdue)
    assert (decision.verdict is Verdict.REFUSE) == (need > ceiling)
    assert (decision.verdict is Verdict.ADMIT) == (need <= free and need <= ceiling)
    if decision.verdict is not Verdict.RECLAIM:
        assert decision.victims == ()
    eligible = [c for c in candidates if overdue or not c.in_demand]
    if decision.verdict is Verdict.RECLAIM:
        victims = list(decision.victims)
        assert free + incoming < need  # what is already on its way would not do
        assert free + incoming + sum(v.nbytes for v in victims) >= need
        assert free + incoming + sum(v.nbytes for v in victims[:-1]) < need  # the fewest
        assert victims == reclaim_order(eligible)[: len(victims)]  # in order, none spared
    if decision.verdict is Verdict.WAIT:  # on its way, or not enough even with every victim
        room = free + incoming
        assert room >= need or room + sum(c.nbytes for c in eligible) < need
    assert not decision.deferred or (
        decision.verdict is Verdict.WAIT
        and not overdue
        and free + incoming + sum(c.nbytes for c in candidates) >= need
    )


def plan(*missing: str, urgent: bool = False, overdue: bool = False) -> Waiting:
    return Waiting(frozenset(missing), urgent, overdue)


# (case, queued plans in arrival order, the order asked)
ORDERS: list[tuple[Any, ...]] = [
    ("nothing queued", [], []),
    ("arrival order among equals", [plan("a"), plan("b")], [0, 1]),
    # issue #18: the missing model most queued plans want loads first
    ("most wanted first", [plan("b"), plan("c"), plan("c"), plan("c")], [1, 2, 3, 0]),
    ("urgent first (a loading model's growth)", [plan("c"), plan(urgent=True)], [1, 0]),
    (
        "the overdue before the most wanted (age cap)",
        [plan("c"), plan("c"), plan("b", overdue=True)],
        [2, 0, 1],
    ),
    ("a plan missing nothing counts as one", [plan("c"), plan("c"), plan()], [0, 1, 2]),
    (
        "a plan counts its most wanted model",
        [plan("x", "c"), plan("b"), plan("c")],
        [0, 2, 1],
    ),
    (
        "the overdue by age, whatever they miss",
        [plan("a", overdue=True), plan("b", overdue=True), plan("b", overdue=True)],
        [0, 1, 2],
    ),
]


@pytest.mark.parametrize(("plans", "expected"), [pytest.param(*c[1:], id=c[0]) for c in ORDERS])
def test_serve_order(plans: list[Waiting], expected: list[int]) -> None:
    assert serve_order(plans) == expected


waiting_plans = st.lists(
    st.builds(
        Waiting,
        missing=st.frozensets(st.sampled_from("abcd"), max_size=2),
        urgent=st.booleans(),
        overdue=st.booleans(),
    ),
    max_size=8,
)


@settings(max_examples=300, derandomize=True, database=None)
@given(plans=waiting_plans)
def test_serve_order_property(plans: list[Waiting]) -> None:
    """A permutation; urgent plans first, then overdue ones, each group by age; then the rest
    by demand (none before one wanting more), arrival order among equals."""
    order = serve_order(plans)
    assert sorted(order) == list(range(len(plans)))
    classes = [(not plans[i].urgent, not plans[i].overdue) for i in order]
    assert classes == sorted(classes)
    demand = [m for p in plans for m in p.missing]
    wanted = [max((demand.count(m) for m in plans[i].missing), default=1) for i in order]
    ranked = list(zip(classes, wanted, order, strict=True))
    for (class_a, wants_a, index_a), (class_b, wants_b, index_b) in pairwise(ranked):
        if class_a == class_b == (True, True):  # neither urgent nor overdue: by demand
            assert wants_a > wants_b or (wants_a == wants_b and index_a < index_b)
        elif class_a == class_b:  # urgent, or overdue: by age
            assert index_a < index_b


# (case, busy, idle since, settle s, when a swap that is not overdue may start)
SWAP_TIMES: list[tuple[Any, ...]] = [
    ("a load, reclaim or request runs: after it", True, 5.0, 0.05, math.inf),
    ("idle since 5: after the answered clients' round trip", False, 5.0, 0.05, 5.05),
    ("idle from the start: at once", False, -math.inf, 0.05, -math.inf),
    ("no settling asked: the moment it went idle", False, 5.0, 0.0, 5.0),
]


@pytest.mark.parametrize(
    ("busy", "idle_since", "settle_s", "expected"),
    [pytest.param(*c[1:], id=c[0]) for c in SWAP_TIMES],
)
def test_swap_at(busy: bool, idle_since: float, settle_s: float, expected: float) -> None:
    assert swap_at(busy, idle_since, settle_s) == expected
