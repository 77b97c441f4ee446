"""Posture rules on synthetic COCO skeletons (pixels, y down), one per label, plus invariance
to scale/position and the "too few keypoints" cases."""

from __future__ import annotations

import numpy as np
import pytest

from zooserve.pipelines.posture import POSTURES, posture

#: (x, y) per COCO keypoint id, torso about 100 px; missing ids get score 0.
SKELETONS: dict[str, dict[int, tuple[float, float]]] = {
    "standing": {
        0: (100, 70), 5: (90, 100), 6: (110, 100), 9: (85, 190), 10: (115, 190),
        11: (92, 200), 12: (108, 200), 13: (92, 300), 14: (108, 300), 15: (92, 400),
        16: (108, 400),
    },
    # side view on a chair: thighs forward, shins down
    "sitting": {
        0: (105, 70), 5: (100, 100), 6: (100, 100), 9: (140, 190), 10: (140, 190),
        11: (100, 200), 12: (100, 200), 13: (180, 205), 14: (180, 205), 15: (180, 290),
        16: (180, 290),
    },
    # squat: hips drop to just above the ankles
    "crouching": {
        0: (95, 170), 5: (90, 200), 6: (110, 200), 9: (130, 270), 10: (140, 270),
        11: (100, 290), 12: (115, 290), 13: (150, 280), 14: (160, 280), 15: (120, 330),
        16: (130, 330),
    },
    # torso horizontal over straight legs
    "bending over": {
        0: (215, 230), 5: (190, 205), 6: (190, 215), 9: (185, 300), 10: (195, 300),
        11: (100, 200), 12: (100, 210), 13: (100, 300), 14: (100, 310), 15: (100, 400),
        16: (100, 410),
    },
    "lying down": {
        0: (70, 305), 5: (100, 300), 6: (100, 310), 9: (150, 300), 10: (150, 312),
        11: (200, 300), 12: (200, 310), 13: (300, 302), 14: (300, 308), 15: (400, 302),
        16: (400, 308),
    },
    "arms raised": {
        0: (100, 70), 5: (90, 100), 6: (110, 100), 7: (80, 60), 8: (120, 60), 9: (85, 20),
        10: (115, 20), 11: (92, 200), 12: (108, 200), 13: (92, 300), 14: (108, 300),
        15: (92, 400), 16: (108, 400),
    },
}  # fmt: skip


def skeleton(points: dict[int, tuple[float, float]], score: float = 0.9) -> np.ndarray:
    keypoints = np.zeros((17, 3), dtype=np.float32)
    for index, (x, y) in points.items():
        keypoints[index] = (x, y, score)
    return keypoints


@pytest.mark.parametrize("label", sorted(SKELETONS))
@pytest.mark.parametrize(
    "scale, shift", [(1.0, (0.0, 0.0)), (0.25, (500.0, 40.0)), (3.0, (-50.0, 7.0))]
)
def test_each_posture_any_scale_and_position(
    label: str, scale: float, shift: tuple[float, float]
) -> None:
    keypoints = skeleton(SKELETONS[label])
    keypoints[:, :2] = keypoints[:, :2] * scale + np.array(shift, dtype=np.float32)
    assert posture(keypoints) == label


def test_front_view_sitting_from_foreshortened_thighs() -> None:
    points = dict(SKELETONS["standing"])
    points.update({13: (92, 225), 14: (108, 225), 15: (92, 320), 16: (108, 320)})
    assert posture(skeleton(points)) == "sitting"


def test_low_scores_are_ignored() -> None:
    keypoints = skeleton(SKELETONS["arms raised"])
    keypoints[[9, 10], 2] = 0.1  # the raised wrists are not confident
    assert posture(keypoints) == "standing"
    assert posture(keypoints, min_score=0.05) == "arms raised"


@pytest.mark.parametrize(
    "missing",
    [
        (5, 6),  # no shoulders
        (11, 12),  # no hips
        (13, 14, 15, 16),  # upper body only: sitting or standing cannot be told apart
        tuple(range(17)),  # nothing
    ],
)
def test_unknown_when_too_few_confident_keypoints(missing: tuple[int, ...]) -> None:
    keypoints = skeleton(SKELETONS["standing"])
    keypoints[list(missing), 2] = 0.0
    assert posture(keypoints) == "unknown"


def test_lying_without_legs_and_every_label_is_listed() -> None:
    keypoints = skeleton(SKELETONS["lying down"])
    keypoints[13:, 2] = 0.0
    assert posture(keypoints) == "lying down"
    assert set(SKELETONS) | {"unknown"} == set(POSTURES)


def test_wrong_shape_rejected() -> None:
    with pytest.raises(ValueError):
        posture(np.zeros((16, 3)))
