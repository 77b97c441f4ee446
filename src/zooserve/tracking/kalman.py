"""A constant-velocity Kalman filter on one box, and the box geometry around it (pure numpy).

SAMURAI (Yang et al. 2024, arXiv:2411.11922, Sec. 4.1 "Motion Modeling") predicts each object's
box with a linear Kalman filter whose state is the box centre, size and their velocities,

    x = [x, y, w, h, vx, vy, vw, vh]^T,

predicts with  x^_{t+1|t} = F x^_{t|t}  (constant velocity) and corrects with the box of the
chosen mask,  x^_{t|t} = x^_{t|t-1} + K_t (z_t - H x^_{t|t-1}).  The noise model is the usual
one of SORT-family trackers (DeepSORT, BoT-SORT): standard deviations proportional to the
box's width/height (1/20 for positions, 1/160 for velocities), so the filter is scale-free.

States are immutable values: a caller keeps one per object (or per SAM2Long pathway) in its own
session and never shares a filter's state through the filter object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Smallest width/height used for the noise scale, so a degenerate box never gives a
#: singular covariance.
MIN_SIZE = 1.0


@dataclass(frozen=True)
class BoxState:
    """Gaussian belief over one box: mean (8,) = [cx, cy, w, h, vcx, vcy, vw, vh] and
    covariance (8, 8), in pixels and pixels per frame."""

    mean: np.ndarray
    covariance: np.ndarray

    @property
    def box(self) -> np.ndarray:
        """The mean box as xyxy (4,) float64 pixels."""
        return cxcywh_to_xyxy(self.mean[:4])


class BoxKalmanFilter:
    """Constant-velocity Kalman filter on (cx, cy, w, h); stateless, so one instance serves all.

    Args:
        position_noise: std of position/size per unit of box size (1/20 in SORT trackers).
        velocity_noise: std of velocities per unit of box size (1/160 in SORT trackers).
    """

    def __init__(self, position_noise: float = 1 / 20, velocity_noise: float = 1 / 160) -> None:
        self.position_noise = position_noise
        self.velocity_noise = velocity_noise
        self.transition = np.eye(8)  # F: position += velocity (one frame per step)
        self.transition[:4, 4:] = np.eye(4)
        self.observation = np.eye(4, 8)  # H: we observe the box, not its velocity

    def _sizes(self, wh: np.ndarray) -> np.ndarray:
        width, height = np.maximum(np.asarray(wh, dtype=np.float64), MIN_SIZE)
        return np.array([width, height, width, height])

    def initiate(self, box: np.ndarray) -> BoxState:
        """A new track at `box` (xyxy) with zero velocity and a wide prior on it."""
        measurement = xyxy_to_cxcywh(box)
        sizes = self._sizes(measurement[2:])
        std = np.concatenate([2 * self.position_noise * sizes, 10 * self.velocity_noise * sizes])
        mean = np.concatenate([measurement, np.zeros(4)])
        return BoxState(mean, np.diag(std**2))

    def predict(self, state: BoxState) -> BoxState:
        """x^_{t+1|t} = F x^_{t|t};  P_{t+1|t} = F P F^T + Q."""
        sizes = self._sizes(state.mean[2:4])
        std = np.concatenate([self.position_noise * sizes, self.velocity_noise * sizes])
        mean = self.transition @ state.mean
        covariance = self.transition @ state.covariance @ self.transition.T + np.diag(std**2)
        return BoxState(mean, covariance)

    def update(self, state: BoxState, box: np.ndarray) -> BoxState:
        """x^_{t|t} = x^_{t|t-1} + K_t (z_t - H x^_{t|t-1}) with z_t the box (xyxy) observed."""
        measurement = xyxy_to_cxcywh(box)
        sizes = self._sizes(state.mean[2:4])
        noise = np.diag((self.position_noise * sizes) ** 2)
        projected_mean = self.observation @ state.mean
        projected_cov = self.observation @ state.covariance @ self.observation.T + noise
        # K = P H^T S^-1, solved rather than inverted (S is symmetric positive definite).
        gain = np.linalg.solve(projected_cov, self.observation @ state.covariance).T
        mean = state.mean + gain @ (measurement - projected_mean)
        covariance = state.covariance - gain @ projected_cov @ gain.T
        return BoxState(mean, covariance)


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def cxcywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    cx, cy, w, h = np.asarray(box, dtype=np.float64)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box (4,) with each of `boxes` (N, 4); rows of NaN (no box) give 0."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    union = area + areas - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Tight xyxy box (4,) float64 of a bool mask (H, W), in pixel edges; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def box_gap(last: np.ndarray, box: np.ndarray) -> float:
    """Distance of `box`'s centre from `last`'s in diagonals of `last`; inf when the areas
    differ more than twofold (not the same object)."""
    area = lambda b: max(float(b[2] - b[0]) * float(b[3] - b[1]), 1e-6)  # noqa: E731
    if not 0.5 <= area(box) / area(last) <= 2.0:
        return float("inf")
    diagonal = float(np.hypot(last[2] - last[0], last[3] - last[1])) or 1.0
    shift = (box[:2] + box[2:]) / 2 - (last[:2] + last[2:]) / 2
    return float(np.hypot(*shift)) / diagonal


def box_inside(
    box: np.ndarray, width: int, height: int
) -> tuple[float, float, float, float] | None:
    """A predicted box clipped to the frame, or None when it is inverted (the Kalman filter's
    width or height went negative) or less than a pixel of it lies inside the frame."""
    x1, y1, x2, y2 = clip_box(box, width, height)
    return (x1, y1, x2, y2) if x2 - x1 >= 1 and y2 - y1 >= 1 else None


def clip_box(box: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )
