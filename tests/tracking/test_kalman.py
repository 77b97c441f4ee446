"""The box Kalman filter on synthetic trajectories, and the box geometry it relies on."""

from __future__ import annotations

import numpy as np
import pytest

from zooserve.tracking.kalman import BoxKalmanFilter, box_iou, mask_box


def trajectory(frames: int, velocity: tuple[float, float], growth: float = 0.0) -> np.ndarray:
    """(frames, 4) xyxy boxes of a 40x30 box starting at (10, 20), moving and growing."""
    t = np.arange(frames)[:, None]
    x1 = 10 + velocity[0] * t
    y1 = 20 + velocity[1] * t
    w = 40 + growth * t
    h = 30 + growth * t
    return np.hstack([x1, y1, x1 + w, y1 + h])


def run(kf: BoxKalmanFilter, measurements: np.ndarray) -> list[np.ndarray]:
    """Filter the measurements; returns the one-step-ahead predicted box before each update."""
    state = kf.initiate(measurements[0])
    predictions = []
    for box in measurements[1:]:
        state = kf.predict(state)
        predictions.append(state.box)
        state = kf.update(state, box)
    return predictions


def test_constant_velocity_is_learned_and_predicted() -> None:
    boxes = trajectory(30, (4.0, -2.0), growth=0.5)
    kf = BoxKalmanFilter()
    predictions = run(kf, boxes)
    # After warm-up the prediction of the next box is within a fraction of a pixel.
    np.testing.assert_allclose(predictions[-1], boxes[-1], atol=0.5)
    state = kf.initiate(boxes[0])
    for box in boxes[1:]:
        state = kf.update(kf.predict(state), box)
    # Centre velocity = corner velocity + half the growth.
    np.testing.assert_allclose(state.mean[4:], [4.25, -1.75, 0.5, 0.5], atol=0.05)
    # Velocity carries the box forward with no measurement (as during an occlusion).
    ahead = kf.predict(kf.predict(state)).box
    np.testing.assert_allclose(ahead, boxes[-1] + np.array([8.0, -4.0, 9.0, -3.0]), atol=0.6)


def test_noisy_measurements_are_smoothed() -> None:
    rng = np.random.default_rng(0)
    truth = trajectory(80, (3.0, 1.0))
    noisy = truth + rng.normal(0, 2.0, truth.shape)
    kf = BoxKalmanFilter()
    state = kf.initiate(noisy[0])
    filtered = []
    for box in noisy[1:]:
        state = kf.update(kf.predict(state), box)
        filtered.append(state.box)
    settled = slice(20, None)
    filter_error = np.sqrt(np.mean((np.array(filtered)[settled] - truth[1:][settled]) ** 2))
    raw_error = np.sqrt(np.mean((noisy[1:][settled] - truth[1:][settled]) ** 2))
    assert filter_error < 0.8 * raw_error


def test_uncertainty_grows_without_measurements_and_shrinks_with_them() -> None:
    kf = BoxKalmanFilter()
    state = kf.initiate(np.array([0.0, 0.0, 20.0, 20.0]))
    predicted = kf.predict(kf.predict(state))
    assert np.trace(predicted.covariance) > np.trace(state.covariance)
    corrected = kf.update(predicted, np.array([0.0, 0.0, 20.0, 20.0]))
    assert np.trace(corrected.covariance) < np.trace(predicted.covariance)
    # States are values: the filter kept nothing, the old state is unchanged.
    assert np.allclose(state.mean[:4], [10, 10, 20, 20])


def test_degenerate_box_keeps_a_valid_covariance() -> None:
    kf = BoxKalmanFilter()
    state = kf.update(kf.predict(kf.initiate(np.array([5.0, 5.0, 5.0, 5.0]))), np.zeros(4))
    assert np.all(np.isfinite(state.mean)) and np.all(np.linalg.eigvalsh(state.covariance) > 0)


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ((0, 0, 10, 10), 1.0),
        ((5, 0, 15, 10), 50 / 150),
        ((20, 20, 30, 30), 0.0),
        ((np.nan,) * 4, 0.0),
    ],
)
def test_box_iou(other: tuple[float, ...], expected: float) -> None:
    iou = box_iou(np.array([0.0, 0.0, 10.0, 10.0]), np.array([other]))
    assert iou.shape == (1,) and iou[0] == pytest.approx(expected)


def test_mask_box() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    assert mask_box(mask) is None
    mask[3:7, 10:15] = True
    np.testing.assert_array_equal(mask_box(mask), [10, 3, 15, 7])
