"""SAMURAI's motion-aware candidate selection and memory rule on synthetic candidates."""

from __future__ import annotations

import numpy as np

from zooserve.tracking.kalman import BoxKalmanFilter
from zooserve.tracking.motion import (
    MotionSettings,
    MotionState,
    choose_candidate,
    memory_eligible,
)

SETTINGS = MotionSettings()
KF = BoxKalmanFilter()


def box_at(x: float, y: float = 40.0, w: float = 20.0, h: float = 20.0) -> np.ndarray:
    return np.array([x, y, x + w, y + h])


def follow(frames: int, speed: float, settings: MotionSettings = SETTINGS) -> MotionState:
    """Track a box moving right at `speed` px/frame with one clear candidate per frame."""
    state = MotionState()
    for t in range(frames):
        choice = choose_candidate(
            state, box_at(10 + speed * t)[None], np.array([0.9]), settings, KF
        )
        assert choice.index == 0
        state = choice.state
    return state


def test_crossing_object_motion_picks_the_tracked_one() -> None:
    """Object A moves right at 4 px/frame; distractor B crosses it leftwards. At the crossing the
    decoder likes B's mask a bit more (0.85 vs 0.80): pure affinity switches to B, SAMURAI's
    motion term keeps A, whose box is where the filter predicts it."""
    frames = SETTINGS.stable_frames + 5
    state = follow(frames, speed=4.0)
    a = box_at(10 + 4.0 * frames)  # where A really is now
    b = box_at(10 + 4.0 * frames + 14)  # the distractor, overlapping A's right part
    candidates = np.stack([b, a])
    affinities = np.array([0.85, 0.80])

    motion = choose_candidate(state, candidates, affinities, SETTINGS, KF)
    assert motion.index == 1 and motion.motion_iou is not None and motion.motion_iou > 0.9
    no_motion = MotionSettings(motion_weight=0.0)
    assert choose_candidate(state, candidates, affinities, no_motion, KF).index == 0
    # The filter was corrected with A's box: it keeps predicting A's path.
    assert abs(motion.state.kalman.box[0] - a[0]) < 1.0  # type: ignore[union-attr]


def test_motion_term_waits_for_a_stable_filter() -> None:
    state = follow(SETTINGS.stable_frames - 3, speed=4.0)
    assert 0 < state.stable_frames < SETTINGS.stable_frames
    candidates = np.stack([box_at(200), box_at(10 + 4.0 * (SETTINGS.stable_frames - 3))])
    choice = choose_candidate(state, candidates, np.array([0.85, 0.80]), SETTINGS, KF)
    assert choice.index == 0 and choice.motion_iou is None  # still argmax affinity


def test_unreliable_frame_restarts_the_warm_up() -> None:
    state = follow(SETTINGS.stable_frames + 2, speed=2.0)
    assert state.stable_frames == SETTINGS.stable_frames
    low = choose_candidate(state, box_at(60)[None], np.array([0.1]), SETTINGS, KF)
    assert low.state.stable_frames == 0
    restarted = choose_candidate(low.state, box_at(62)[None], np.array([0.9]), SETTINGS, KF)
    assert restarted.state.stable_frames == 1 and restarted.motion_iou is None
    np.testing.assert_allclose(restarted.state.kalman.box, box_at(62))  # type: ignore[union-attr]


def test_empty_best_mask_does_not_start_the_filter() -> None:
    empty = np.full((1, 4), np.nan)
    choice = choose_candidate(MotionState(), empty, np.array([0.9]), SETTINGS, KF)
    assert choice.index == 0 and choice.state == MotionState()


def test_memory_rule() -> None:
    assert memory_eligible(0.8, 2.0, 0.6, SETTINGS)
    assert memory_eligible(0.8, 2.0, None, SETTINGS)  # motion unknown during warm-up
    assert not memory_eligible(0.4, 2.0, 0.6, SETTINGS)  # weak mask (tau_mask 0.5)
    assert not memory_eligible(0.8, -0.5, 0.6, SETTINGS)  # object absent (tau_obj 0)
    assert not memory_eligible(0.8, 2.0, 0.0, SETTINGS)  # off the predicted path (tau_kf 0)
