"""Posture of one person from 17 COCO keypoints (image pixels, y pointing down), pure numpy.

A few geometric rules in body units (the torso: mid-shoulders to mid-hips), so they hold at any
scale and position; they assume an upright camera. In the order they are tried:

1. **lying down** — the torso is within 30° of horizontal and so are the legs (or the legs are
   not visible);
2. **crouching** — the hips are less than half a torso above the ankles;
3. **bending over** — the torso leans 35° or more while the legs stand extended under it;
4. **arms raised** — a wrist is above the shoulders by a fifth of a torso or more;
5. **sitting** — a thigh is closer to horizontal than vertical (side view), or the knees are
   foreshortened to within 0.35 torso below the hips (front view);
6. **standing** — the thighs hang down from the hips;
7. **unknown** — no confident shoulder or hip, or no knee/ankle to decide between 5 and 6.
"""

from __future__ import annotations

import numpy as np

NOSE = 0
SHOULDERS = (5, 6)
WRISTS = (9, 10)
HIPS = (11, 12)
KNEES = (13, 14)
ANKLES = (15, 16)

POSTURES = (
    "standing",
    "sitting",
    "crouching",
    "bending over",
    "lying down",
    "arms raised",
    "unknown",
)


def _mid(keypoints: np.ndarray, confident: np.ndarray, ids: tuple[int, ...]) -> np.ndarray | None:
    """Mean (x, y) of the confident keypoints among `ids`, or None if none is confident."""
    chosen = [i for i in ids if confident[i]]
    if not chosen:
        return None
    return np.asarray(keypoints[chosen, :2].mean(axis=0), dtype=np.float64)


def _tilt_from_down(vector: np.ndarray) -> float:
    """Angle in degrees between `vector` (dx, dy) and straight down the image (0, 1)."""
    return float(np.degrees(np.arctan2(abs(vector[0]), vector[1])))


def posture(keypoints: np.ndarray, min_score: float = 0.3) -> str:
    """One of `POSTURES` for a (17, 3) array of COCO keypoints: x px, y px, score.

    Keypoints with a score below `min_score` are ignored.
    """
    points = np.asarray(keypoints, dtype=np.float64)
    if points.shape != (17, 3):
        raise ValueError(f"expected (17, 3) COCO keypoints, got shape {points.shape}")
    confident = (points[:, 2] >= min_score) & np.isfinite(points).all(axis=1)

    shoulders = _mid(points, confident, SHOULDERS)
    hips = _mid(points, confident, HIPS)
    if shoulders is None or hips is None:
        return "unknown"
    torso = shoulders - hips
    torso_length = float(np.hypot(*torso))
    if torso_length < 1e-6:
        return "unknown"
    torso_tilt = _tilt_from_down(-torso)  # 0 = upright, 90 = horizontal, 180 = upside down

    knees = _mid(points, confident, KNEES)
    ankles = _mid(points, confident, ANKLES)
    feet = ankles if ankles is not None else knees
    leg_tilt = None if feet is None else _tilt_from_down(feet - hips)
    # Hip height over the ankles, in torso lengths (needs the ankles themselves).
    hip_height = None if ankles is None else float(ankles[1] - hips[1]) / torso_length

    if torso_tilt >= 60 and (leg_tilt is None or 45 <= leg_tilt <= 135):
        return "lying down"
    if hip_height is not None and hip_height < 0.5 and torso_tilt < 60:
        return "crouching"
    legs_extended = hip_height is None or hip_height >= 0.5
    if torso_tilt >= 35 and leg_tilt is not None and leg_tilt < 45 and legs_extended:
        return "bending over"
    if _arms_raised(points, confident, shoulders, torso_length):
        return "arms raised"
    if knees is None:
        return "unknown"
    if _thighs_level(points, confident, hips, torso_length):
        return "sitting"
    return "standing"


def _arms_raised(
    points: np.ndarray, confident: np.ndarray, shoulders: np.ndarray, torso_length: float
) -> bool:
    """True when a confident wrist is a fifth of a torso or more above the shoulder line."""
    return any(confident[i] and shoulders[1] - points[i, 1] >= 0.2 * torso_length for i in WRISTS)


def _thighs_level(
    points: np.ndarray, confident: np.ndarray, hips: np.ndarray, torso_length: float
) -> bool:
    """True when a thigh runs more sideways than down (side view) or is foreshortened to a
    short drop below the hips (front view) — the geometry of a seated person."""
    for hip, knee in zip(HIPS, KNEES, strict=True):
        if not confident[knee]:
            continue
        start = points[hip, :2] if confident[hip] else hips
        thigh = points[knee, :2] - start
        if _tilt_from_down(thigh) > 50:
            return True
        if thigh[1] < 0.35 * torso_length:
            return True
    return False
