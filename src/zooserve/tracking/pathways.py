"""SAM2Long's constrained memory tree: pathway bookkeeping (pure Python).

SAM2Long (Ding et al. 2024, arXiv:2410.16268, "Constrained Tree Memory") keeps P segmentation
pathways per object, each with its own memory bank and a cumulative score. On every frame each
pathway proposes K candidate masks (SAM2's multimask output) with predicted IoUs; candidate k of
pathway p scores

    S_{p,k} = S_p + log(IoU_{p,k} + eps),

and the P best of the P*K branches become the next pathways (`expand`). The output is the
pathway with the highest cumulative score. When the object's presence is uncertain (every
pathway's |object score logit| is at most delta, `uncertainty`), the P branches are instead taken
with distinct predicted masks (by distinct IoU, signed by presence), best first, so that the
alternatives survive an occlusion (the paper's "uncertainty handling").

Memory ("Object-aware Memory Bank Construction"): a pathway's frame may be attended later only
if its mask is plausible (IoU > `iou_threshold`) and the object is present (logit > 0)
(`memory_eligible`); `memory.py` picks the bank from the eligible frames.

Deviation from the paper: the tree starts from one pathway (the prompt frame's) and grows to P,
instead of P identical copies; identical pathways would only propose identical branches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Entry = TypeVar("Entry")

#: Keeps log() finite for a candidate with a predicted IoU of zero.
EPSILON = 1e-5


@dataclass(frozen=True)
class Branch:
    """Candidate `candidate` of pathway `parent`, with the cumulative score it would carry."""

    parent: int
    candidate: int
    score: float


@dataclass
class Pathway(Generic[Entry]):
    """One hypothesis: its cumulative score and its own memory, frame -> entry.

    Entries are shared between pathways that grew from the same parent (a tree), so growing a
    pathway copies the mapping, never the entries.
    """

    score: float = 0.0
    history: dict[int, Entry] = field(default_factory=dict)

    def grown(self, frame: int, entry: Entry, score: float) -> Pathway[Entry]:
        return Pathway(score, {**self.history, frame: entry})


def expand(
    scores: Sequence[float],
    affinities: Sequence[Sequence[float]],
    object_logits: Sequence[float],
    max_pathways: int,
    uncertainty: float,
) -> list[Branch]:
    """The branches that survive this frame, best first.

    Args:
        scores: (P,) cumulative score of each current pathway.
        affinities: (P, K) predicted IoU of each pathway's candidates.
        object_logits: (P,) each pathway's object score logit on this frame.
        max_pathways: P_max, how many branches to keep.
        uncertainty: delta; at or below it for every pathway, keep diverse branches instead.
    """
    branches = [
        Branch(p, k, scores[p] + math.log(max(float(iou), 0.0) + EPSILON))
        for p, row in enumerate(affinities)
        for k, iou in enumerate(row)
    ]
    branches.sort(key=lambda b: b.score, reverse=True)  # stable: ties keep (parent, candidate)
    if max(abs(float(v)) for v in object_logits) > uncertainty:
        return branches[:max_pathways]
    return _diverse(branches, affinities, object_logits, max_pathways)


def _diverse(
    branches: list[Branch],
    affinities: Sequence[Sequence[float]],
    object_logits: Sequence[float],
    max_pathways: int,
) -> list[Branch]:
    """Best-first branches with distinct (rounded, presence-signed) IoUs; then, if that leaves
    room, the best branch of each pathway not represented yet (as the authors' code does)."""
    kept: list[Branch] = []
    seen: set[float] = set()
    for branch in branches:
        iou = float(affinities[branch.parent][branch.candidate])
        signed = round(iou if object_logits[branch.parent] > 0 else -iou, 2)
        if signed not in seen:
            seen.add(signed)
            kept.append(branch)
        if len(kept) == max_pathways:
            return kept
    parents = {b.parent for b in kept}
    for branch in branches:
        if len(kept) == max_pathways:
            break
        if branch.parent not in parents:
            parents.add(branch.parent)
            kept.append(branch)
    return kept


def best(pathways: Sequence[Pathway[Entry]]) -> int:
    """Index of the pathway with the highest cumulative score (the first on ties)."""
    return max(range(len(pathways)), key=lambda i: pathways[i].score)


def memory_eligible(affinity: float, object_logit: float, iou_threshold: float) -> bool:
    """SAM2Long's object-aware memory rule: a plausible mask of a present object."""
    return affinity > iou_threshold and object_logit > 0
