"""SAM2Long's pathway bookkeeping and SAM2 memory-frame selection."""

from __future__ import annotations

import math
from collections.abc import Collection

import pytest

from zooserve.tracking.memory import frames_to_keep, ranked_slots, reliable_frames
from zooserve.tracking.pathways import EPSILON, Pathway, best, expand, memory_eligible


def recent_frames(frame: int, available: Collection[int], slots: int) -> list[tuple[int, int]]:
    """SAM2's fixed window: (offset, frame - offset) for offsets slots..1 that exist (a test
    helper: nothing in the package calls it).

    Oldest first, as transformers' `Sam2VideoModel` gathers them.
    """
    return [
        (offset, frame - offset) for offset in range(slots, 0, -1) if frame - offset in available
    ]


def test_pruning_keeps_the_best_cumulative_scores() -> None:
    # Pathway 0 has a good past; pathway 1 a bad past but a better candidate now.
    scores = [math.log(0.9) * 5, math.log(0.3) * 5]
    affinities = [[0.6, 0.5, 0.1], [0.95, 0.2, 0.1]]
    branches = expand(scores, affinities, [5.0, 5.0], max_pathways=3, uncertainty=2.0)
    assert [(b.parent, b.candidate) for b in branches] == [(0, 0), (0, 1), (0, 2)]
    assert branches[0].score == pytest.approx(scores[0] + math.log(0.6 + EPSILON))
    assert [b.score for b in branches] == sorted((b.score for b in branches), reverse=True)
    # Greedy per-frame IoU would have picked pathway 1's 0.95 mask; the tree keeps history.
    kept = {(b.parent, b.candidate) for b in branches}
    assert (1, 0) not in kept


def test_pruning_across_pathways() -> None:
    branches = expand([0.0, -0.1], [[0.5, 0.4, 0.3], [0.9, 0.8, 0.1]], [4.0, 4.0], 2, 2.0)
    assert [(b.parent, b.candidate) for b in branches] == [(1, 0), (1, 1)]


def test_uncertain_presence_keeps_diverse_branches() -> None:
    # |logit| <= 2 everywhere: keep distinct masks (by IoU signed by presence), best first.
    affinities = [[0.80, 0.80, 0.40], [0.80, 0.79, 0.10]]
    branches = expand([0.0, -1.0], affinities, [1.0, -1.0], 3, uncertainty=2.0)
    picked = [(b.parent, b.candidate) for b in branches]
    assert picked[:2] == [(0, 0), (0, 2)]  # (0, 1) duplicates (0, 0)'s IoU
    assert picked[2][0] == 1  # pathway 1 (object absent, -IoU) is represented
    assert len(picked) == 3


def test_duplicates_fill_up_with_unrepresented_pathways() -> None:
    affinities = [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
    branches = expand([0.0, -3.0], affinities, [1.0, 1.0], 3, uncertainty=2.0)
    assert [(b.parent, b.candidate) for b in branches] == [(0, 0), (1, 0)]


def test_pathway_growth_shares_entries_and_copies_history() -> None:
    root: Pathway[str] = Pathway(0.0, {0: "prompt"})
    child = root.grown(1, "a", -0.1)
    sibling = root.grown(1, "b", -0.2)
    assert root.history == {0: "prompt"}
    assert child.history == {0: "prompt", 1: "a"} and sibling.history[1] == "b"
    assert best([sibling, child]) == 1


def test_occluded_frames_never_enter_memory() -> None:
    assert memory_eligible(0.8, 3.0, iou_threshold=0.1)
    assert not memory_eligible(0.8, -0.5, iou_threshold=0.1)  # occluded
    assert not memory_eligible(0.05, 3.0, iou_threshold=0.1)  # implausible mask
    # Frames 3 and 5 were occluded: the memory of frame 7 skips them.
    eligible = {1: True, 2: True, 3: False, 4: True, 5: False, 6: True}
    assert reliable_frames(7, eligible, count=4) == [6, 4, 2, 1]
    # The previous frame is always attended, even when occluded (as in both reference codes).
    eligible[6] = False
    assert reliable_frames(7, eligible, count=2) == [6, 4, 2]
    assert reliable_frames(8, {**eligible, 7: True}, count=3) == [7, 4, 2]


def test_memory_slots_and_pruning() -> None:
    # SAM2's window: offsets 6..1 that exist, oldest first.
    assert recent_frames(5, {1, 2, 3, 4}, 6) == [(4, 1), (3, 2), (2, 3), (1, 4)]
    # Reliable frames get slots by recency rank, oldest first.
    assert ranked_slots([9, 4, 2], 6) == [(3, 2), (2, 4), (1, 9)]
    assert ranked_slots([9, 4, 2], 2) == [(2, 4), (1, 9)]
    eligible = {f: f % 2 == 0 for f in range(20)}
    keep = frames_to_keep(19, eligible, window=3, count=2)
    assert keep == {17, 18, 19, 16}  # last 3 frames + newest 2 eligible (18, 16) + previous
