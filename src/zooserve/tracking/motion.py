"""SAMURAI's motion-aware mask selection and memory rule (pure numpy).

SAMURAI (Yang et al. 2024, arXiv:2411.11922) changes two decisions of SAM2 per object and frame:

1. Mask selection (Sec. 4.1, "Motion Modeling"). SAM2's decoder proposes K candidate masks M_i
   with predicted IoUs s_mask(M_i) (their "affinity"); SAM2 keeps argmax s_mask. SAMURAI
   predicts the box with a Kalman filter (`kalman.py`), scores each candidate by the motion
   score s_kf(M_i) = IoU(x^_{t|t-1}, box(M_i)) and keeps

       M* = argmax_i  alpha_kf * s_kf(M_i) + (1 - alpha_kf) * s_mask(M_i),

   then corrects the filter with box(M*).
2. Memory selection (Sec. 4.2, "Motion-Aware Memory Selection"). A frame may enter the memory
   bank only if its mask affinity, object score and motion score all pass thresholds:
   s_mask > tau_mask, s_obj > tau_obj, s_kf > tau_kf (`memory_eligible`; `memory.py` picks
   the bank from the eligible frames).

As in the authors' code (yangchris11/samurai, `sam2_base.py`), the motion term only starts to
count once the filter has been corrected on `stable_frames` consecutive frames whose chosen mask
had affinity > `stable_iou`; until then the candidate is argmax s_mask and the filter just
learns. A frame whose chosen mask is unreliable (affinity below `stable_iou`) restarts that
warm-up. Deviation: a chosen mask that is empty never corrects or starts the filter (the authors
feed it the box [0, 0, 0, 0]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zooserve.tracking.kalman import BoxKalmanFilter, BoxState, box_iou


@dataclass(frozen=True)
class MotionSettings:
    """SAMURAI's hyper-parameters (defaults from the authors' code and paper)."""

    motion_weight: float = 0.15  # alpha_kf
    stable_frames: int = 15  # corrections before the motion term is used
    stable_iou: float = 0.3  # affinity a chosen mask needs to correct the filter
    memory_mask_iou: float = 0.5  # tau_mask
    memory_object_logit: float = 0.0  # tau_obj (on the object score logit)
    memory_motion_iou: float = 0.0  # tau_kf


@dataclass(frozen=True)
class MotionState:
    """One object's motion belief: the filter state (None before the first box) and how many
    consecutive reliable corrections it has had."""

    kalman: BoxState | None = None
    stable_frames: int = 0


@dataclass(frozen=True)
class MotionChoice:
    index: int  # chosen candidate
    motion_iou: float | None  # s_kf of the chosen candidate; None while the filter warms up
    state: MotionState  # the object's motion state after this frame


def choose_candidate(
    state: MotionState,
    boxes: np.ndarray,
    affinities: np.ndarray,
    settings: MotionSettings,
    kalman: BoxKalmanFilter,
) -> MotionChoice:
    """Pick one of K candidates and advance the object's motion state.

    Args:
        state: the object's motion state after the previous frame.
        boxes: (K, 4) xyxy box of each candidate mask; a row of NaN for an empty mask.
        affinities: (K,) predicted IoU of each candidate (s_mask).
    """
    affinities = np.asarray(affinities, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if state.kalman is None or state.stable_frames == 0:
        index = int(np.argmax(affinities))
        box = boxes[index]
        if np.isnan(box).any():
            return MotionChoice(index, None, MotionState(None, 0))
        return MotionChoice(index, None, MotionState(kalman.initiate(box), 1))

    predicted = kalman.predict(state.kalman)
    if state.stable_frames < settings.stable_frames:
        index = int(np.argmax(affinities))
        motion_iou = None
    else:
        motion = box_iou(predicted.box, boxes)
        weighted = settings.motion_weight * motion + (1 - settings.motion_weight) * affinities
        index = int(np.argmax(weighted))
        motion_iou = float(motion[index])
    box = boxes[index]
    if affinities[index] <= settings.stable_iou or np.isnan(box).any():
        return MotionChoice(index, motion_iou, MotionState(predicted, 0))
    updated = kalman.update(predicted, box)
    stable = min(state.stable_frames + 1, settings.stable_frames)
    return MotionChoice(index, motion_iou, MotionState(updated, stable))


def memory_eligible(
    affinity: float, object_logit: float, motion_iou: float | None, settings: MotionSettings
) -> bool:
    """SAMURAI's memory rule: s_mask > tau_mask, s_obj > tau_obj and s_kf > tau_kf (when known)."""
    return (
        affinity > settings.memory_mask_iou
        and object_logit > settings.memory_object_logit
        and (motion_iou is None or motion_iou > settings.memory_motion_iou)
    )
