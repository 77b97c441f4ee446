"""SAMURAI (Yang et al. 2024, "SAMURAI: Adapting Segment Anything Model for Zero-Shot Visual
Tracking with Motion-Aware Memory", arXiv:2411.11922) on a SAM 2.1 checkpoint, training-free.

What is implemented, per object and tracked frame (`tracking/motion.py` has the formulas):
- Motion-aware mask selection (Sec. 4.1 "Motion Modeling"): the decoder's K=3 multimask
  candidates, a constant-velocity Kalman filter on the object's box (`tracking/kalman.py`), and
  M* = argmax alpha_kf*IoU(x^_{t|t-1}, box(M_i)) + (1 - alpha_kf)*s_mask(M_i); the filter is
  corrected with box(M*). As in the authors' code the motion term starts after `stable_frames`
  reliable corrections (before that: argmax s_mask while the filter learns).
- Motion-aware memory selection (Sec. 4.2): a tracked frame may enter the memory bank only if
  s_mask > tau_mask, s_obj > tau_obj and s_kf > tau_kf. The bank of each step holds the newest
  `num_maskmem - 1` of those frames (looking back over the newest
  `max_object_pointers_in_encoder - 1` eligible ones), always plus the previous frame, in
  temporal slots by recency rank, as in the authors' code. Object pointers come from the
  previous frames as in SAM2 (the authors' code does not filter them either).

Both are real changes of what SAM2 attends to: transformers' `Sam2VideoModel.forward` chooses
candidate and memory frames internally and exposes no hook, so this family runs the step from
the model's parts with its own memory bank (`memory_tracker.py`); prompt frames still go through
transformers' single-frame inference. Not implemented: the authors' code also lowers SAM2's
object-present threshold to a logit of -1 (`min_obj_score_logits`); it stays 0 here, as in SAM2.

Options (`models.<name>.options`, defaults from the paper and the authors' code):
motion_weight (alpha_kf, 0.15), stable_frames (15), stable_iou (0.3), memory_mask_iou (tau_mask,
0.5), memory_object_logit (tau_obj, 0.0), memory_motion_iou (tau_kf, 0.0), occlusion_threshold
(0.5, as for sam2).
"""

from __future__ import annotations

from dataclasses import dataclass

from zooserve.catalog import ModelSpec
from zooserve.families.sam2.memory_tracker import Kept, MemoryEntry, MemoryTracker, MemoryView
from zooserve.families.sam2.tracker import BASE_OPTIONS, Sam2Session
from zooserve.tracking.kalman import BoxKalmanFilter
from zooserve.tracking.memory import frames_to_keep, ranked_slots, reliable_frames
from zooserve.tracking.motion import (
    MotionChoice,
    MotionSettings,
    MotionState,
    choose_candidate,
    memory_eligible,
)

DEFAULTS = MotionSettings()


@dataclass
class SamuraiTrack:
    """One object's state in a session: its prompt frames, tracked frames and motion."""

    conditioning: dict[int, MemoryEntry]
    history: dict[int, MemoryEntry]
    motion: MotionState


class SamuraiTracker(MemoryTracker):
    """SAM2 with SAMURAI's motion-aware candidate and memory selection."""

    family = "samurai"
    persistent = ("settings", "motion", "kalman")
    options = {
        **BASE_OPTIONS,
        "motion_weight": DEFAULTS.motion_weight,
        "stable_frames": DEFAULTS.stable_frames,
        "stable_iou": DEFAULTS.stable_iou,
        "memory_mask_iou": DEFAULTS.memory_mask_iou,
        "memory_object_logit": DEFAULTS.memory_object_logit,
        "memory_motion_iou": DEFAULTS.memory_motion_iou,
    }

    def __init__(self, spec: ModelSpec, source: str, device: str) -> None:
        super().__init__(spec, source, device)
        s = self.settings
        self.motion = MotionSettings(
            motion_weight=s["motion_weight"],
            stable_frames=int(s["stable_frames"]),
            stable_iou=s["stable_iou"],
            memory_mask_iou=s["memory_mask_iou"],
            memory_object_logit=s["memory_object_logit"],
            memory_motion_iou=s["memory_motion_iou"],
        )
        self.kalman = BoxKalmanFilter()  # stateless: states live in each session's tracks

    def _begin(self, session: Sam2Session, obj: int, index: int, entry: MemoryEntry) -> None:
        """A prompt (new object, or a correction that also restarts its motion model)."""
        track = session.tracks.get(obj)
        if track is None:
            session.tracks[obj] = SamuraiTrack({index: entry}, {}, MotionState())
        else:
            track.conditioning[index] = entry
            track.motion = MotionState()

    def _advance(self, session: Sam2Session, index: int, objects: list[int]) -> dict[int, Kept]:
        kept: dict[int, Kept] = {}
        choices: dict[int, MotionChoice] = {}
        for obj in objects:
            track: SamuraiTrack = session.tracks[obj]
            proposal = self._propose(session, index, self._view(track, index))
            choice = choose_candidate(
                track.motion, proposal.boxes, proposal.affinities, self.motion, self.kalman
            )
            track.motion = choice.state
            choices[obj] = choice
            kept[obj] = self._keep(proposal, choice.index)
        entries = self._remember(session, index, list(kept.values()), from_prompts=False)
        for obj, entry in zip(kept, entries, strict=True):
            entry.eligible = memory_eligible(
                entry.affinity, entry.object_logit, choices[obj].motion_iou, self.motion
            )
            session.tracks[obj].history[index] = entry
        return kept

    def _view(self, track: SamuraiTrack, index: int) -> MemoryView:
        """Prompt frames, the reliable memory frames and the previous frames' pointers."""
        slots = self.model.num_maskmem - 1
        pointer_count = self.model.config.max_object_pointers_in_encoder - 1
        eligible = {f: e.eligible for f, e in track.history.items()}
        newest = reliable_frames(index, eligible, max(slots, pointer_count))
        memories = [(slot, track.history[f]) for slot, f in ranked_slots(newest, slots)]
        pointers = [
            (offset, track.history[index - offset])
            for offset in range(1, pointer_count + 1)
            if index - offset in track.history
        ]
        return MemoryView(track.conditioning, memories, pointers)

    def _forget(self, session: Sam2Session, index: int) -> None:
        pointer_count = self.model.config.max_object_pointers_in_encoder - 1
        window = max(self.model.num_maskmem - 1, pointer_count)
        for track in session.tracks.values():
            eligible = {f: e.eligible for f, e in track.history.items()}
            keep = frames_to_keep(index, eligible, window, window)
            track.history = {f: e for f, e in track.history.items() if f in keep}
