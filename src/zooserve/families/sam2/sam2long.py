"""SAM2Long (Ding et al. 2024, "SAM2Long: Enhancing SAM 2 for Long Video Segmentation with a
Training-Free Memory Tree", arXiv:2410.16268) on a SAM 2.1 checkpoint, training-free.

What is implemented, per object and tracked frame (`tracking/pathways.py` has the formulas):
- Constrained tree memory: up to P pathways, each with its own memory bank and cumulative
  score; each proposes SAM2's K=3 multimask candidates, the P*K branches are scored
  S_p + log(IoU_{p,k} + eps) and the best P survive; with uncertain presence (every pathway's
  |object logit| <= delta) the survivors are chosen with distinct masks instead.
- Object-aware memory: a pathway's frame may be attended later only if its IoU > the threshold
  and the object is present (logit > 0). Each pathway's bank holds the newest `num_maskmem - 1`
  such frames plus always the previous frame (slots by recency rank), and its object pointers
  come from the same eligible frames, as in the authors' code.

Streaming output: frames are answered as they arrive, so each frame reports the mask of the
pathway that is best *now*; the paper picks the best pathway after the last frame and reports
its whole history. Not implemented: the paper's memory-attention modulation (scaling memory
entries by their object scores) needs a change inside transformers' memory attention.
Cost: P memory-attention + decoder passes per object and frame (the image encoder runs once).

Options (`models.<name>.options`, defaults from the authors' code): num_pathways (3),
iou_threshold (0.1), uncertainty (delta, 2.0), occlusion_threshold (0.5, as for sam2).
"""

from __future__ import annotations

from dataclasses import dataclass

from zooserve.catalog import ModelSpec
from zooserve.core.errors import ConfigError
from zooserve.families.sam2.memory_tracker import Kept, MemoryEntry, MemoryTracker, MemoryView
from zooserve.families.sam2.tracker import BASE_OPTIONS, Sam2Session
from zooserve.tracking.memory import frames_to_keep, ranked_slots, reliable_frames
from zooserve.tracking.pathways import Branch, Pathway, best, expand, memory_eligible


@dataclass
class LongTrack:
    """One object's state in a session: its prompt frames and its pathways."""

    conditioning: dict[int, MemoryEntry]
    pathways: list[Pathway[MemoryEntry]]


class Sam2LongTracker(MemoryTracker):
    """SAM2 with SAM2Long's memory tree of segmentation pathways."""

    family = "sam2long"
    persistent = ("settings", "num_pathways")
    options = {**BASE_OPTIONS, "num_pathways": 3, "iou_threshold": 0.1, "uncertainty": 2.0}

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        pathways = self.settings["num_pathways"]
        if pathways < 1 or pathways != int(pathways):
            raise ConfigError(
                f"models.{spec.name}.options.num_pathways: expected a whole number >= 1, "
                f"got {pathways}",
                {"model": spec.name, "option": "num_pathways"},
            )
        self.num_pathways = int(pathways)

    def _begin(self, session: Sam2Session, obj: int, index: int, entry: MemoryEntry) -> None:
        """A prompt: a new tree, or (a correction) the best pathway continues alone."""
        track = session.tracks.get(obj)
        if track is None:
            session.tracks[obj] = LongTrack({index: entry}, [Pathway()])
        else:
            track.conditioning[index] = entry
            track.pathways = [Pathway(0.0, dict(track.pathways[best(track.pathways)].history))]

    def _advance(self, session: Sam2Session, index: int, objects: list[int]) -> dict[int, Kept]:
        branches: list[tuple[int, Branch, Kept]] = []
        for obj in objects:
            track: LongTrack = session.tracks[obj]
            proposals = [
                self._propose(session, index, self._view(track, pathway, index))
                for pathway in track.pathways
            ]
            survivors = expand(
                [p.score for p in track.pathways],
                [p.affinities.tolist() for p in proposals],
                [p.object_logit for p in proposals],
                self.num_pathways,
                self.settings["uncertainty"],
            )
            for branch in survivors:
                branches.append(
                    (obj, branch, self._keep(proposals[branch.parent], branch.candidate))
                )
        entries = self._remember(session, index, [k for _, _, k in branches], from_prompts=False)
        grown: dict[int, list[tuple[Pathway[MemoryEntry], Kept]]] = {obj: [] for obj in objects}
        for (obj, branch, kept), entry in zip(branches, entries, strict=True):
            entry.eligible = memory_eligible(
                entry.affinity, entry.object_logit, self.settings["iou_threshold"]
            )
            parent = session.tracks[obj].pathways[branch.parent]
            grown[obj].append((parent.grown(index, entry, branch.score), kept))
        results = {}
        for obj, items in grown.items():
            pathways = [pathway for pathway, _ in items]
            session.tracks[obj].pathways = pathways
            results[obj] = items[best(pathways)][1]
        return results

    def _view(self, track: LongTrack, pathway: Pathway[MemoryEntry], index: int) -> MemoryView:
        """Prompt frames plus the pathway's reliable frames as memories and pointers."""
        slots = self.model.num_maskmem - 1
        pointer_count = self.model.config.max_object_pointers_in_encoder - 1
        eligible = {f: e.eligible for f, e in pathway.history.items()}
        newest = reliable_frames(index, eligible, max(slots, pointer_count))
        memories = [(slot, pathway.history[f]) for slot, f in ranked_slots(newest, slots)]
        pointers = [(rank, pathway.history[f]) for rank, f in enumerate(newest[:pointer_count], 1)]
        return MemoryView(track.conditioning, memories, pointers)

    def _forget(self, session: Sam2Session, index: int) -> None:
        lookback = max(
            self.model.num_maskmem - 1, self.model.config.max_object_pointers_in_encoder - 1
        )
        for track in session.tracks.values():
            for pathway in track.pathways:
                eligible = {f: e.eligible for f, e in pathway.history.items()}
                keep = frames_to_keep(index, eligible, 1, lookback)
                pathway.history = {f: e for f, e in pathway.history.items() if f in keep}
