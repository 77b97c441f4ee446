"""Depth Anything adapter against a tiny random checkpoint: parity with the hand-run
transformers pipeline after the documented "lower = closer" conversion, ordering, mixed sizes,
metric checkpoints, per-box distance, half precision (memory, unload and corrupt weights:
test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import DepthAnythingForDepthEstimation, DPTImageProcessor

from tests.conftest import TinyModels
from tests.families.adapters import load_adapter, make_adapter
from tests.tiny.depth_anything import build_metric
from zooserve.core.errors import InvalidInput
from zooserve.families.hf.depth_anything import DepthAnythingEstimator, relative_distance


@pytest.fixture(scope="module")
def tiny_path(tiny_models: TinyModels) -> Path:
    return tiny_models.path("depth_anything")


@pytest.fixture(scope="module")
def estimator(tiny_path: Path) -> DepthAnythingEstimator:
    return load_adapter(DepthAnythingEstimator, tiny_path)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    # Two sizes (chelsea is 300x451, so a non-square tensor) and two same-size images that
    # share one forward: the mirrored astronaut must come back in its own slot.
    astronaut = skimage.data.astronaut()
    return [astronaut, skimage.data.chelsea(), np.ascontiguousarray(astronaut[:, ::-1])]


def _reference_raw(path: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    """The documented transformers pipeline, one image at a time: inverse depth at input size."""
    processor = DPTImageProcessor.from_pretrained(path, local_files_only=True)
    model = DepthAnythingForDepthEstimation.from_pretrained(path, local_files_only=True).eval()
    maps = []
    for image in images:
        with torch.inference_mode():
            outputs = model(**processor(images=[image], return_tensors="pt"))
        (result,) = processor.post_process_depth_estimation(outputs, target_sizes=[image.shape[:2]])
        maps.append(result["predicted_depth"].numpy())
    return maps


@pytest.fixture(scope="module")
def reference_raw(tiny_path: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    return _reference_raw(tiny_path, images)


def test_parity_after_documented_conversion(
    estimator: DepthAnythingEstimator, images: list[np.ndarray], reference_raw: list[np.ndarray]
) -> None:
    got = estimator.estimate_depth(images)
    raw = reference_raw
    assert len(got) == len(raw) == len(images)
    for depth, inverse, image in zip(got, raw, images, strict=True):
        assert depth.dtype == np.float32 and depth.shape == image.shape[:2]
        assert inverse.std() > 0, "random model predicts a flat map; parity is vacuous"
        # The module docstring's conversion, by hand: normalise, then flip.
        expected = 1.0 - (inverse - inverse.min()) / (inverse.max() - inverse.min())
        np.testing.assert_allclose(depth, expected, atol=1e-4, rtol=0)
    assert not np.allclose(got[0], got[2]), "mirrored image got the other image's map"


def test_nearer_is_lower_on_the_models_own_ordering(
    estimator: DepthAnythingEstimator, images: list[np.ndarray], reference_raw: list[np.ndarray]
) -> None:
    (depth,) = estimator.estimate_depth(images[1:2])
    inverse = reference_raw[1]
    # The model's nearest pixel (largest inverse depth) is 0, its farthest is 1.
    assert depth.flat[inverse.argmax()] == pytest.approx(0.0, abs=1e-6)
    assert depth.flat[inverse.argmin()] == pytest.approx(1.0, abs=1e-6)
    assert depth.min() >= 0.0 and depth.max() <= 1.0
    # Every pair keeps its order, reversed: a strictly decreasing map.
    assert np.corrcoef(inverse.ravel(), depth.ravel())[0, 1] == pytest.approx(-1.0, abs=1e-6)
    near = np.unravel_index(inverse.argmax(), inverse.shape)
    far = np.unravel_index(inverse.argmin(), inverse.shape)
    near_box = (near[1] - 2, near[0] - 2, near[1] + 3, near[0] + 3)
    far_box = (far[1] - 2, far[0] - 2, far[1] + 3, far[0] + 3)
    assert relative_distance(depth, near_box) < relative_distance(depth, far_box)


def test_metric_checkpoints_are_returned_in_metres(tmp_path: Path) -> None:
    path = build_metric(tmp_path / "depth-metric")
    adapter = load_adapter(DepthAnythingEstimator, path)
    assert adapter.metric
    image = skimage.data.chelsea()
    (depth,) = adapter.estimate_depth([image])
    (expected,) = _reference_raw(path, [image])
    np.testing.assert_allclose(depth, expected, atol=1e-4, rtol=0)
    assert depth.min() >= 0.0 and depth.max() <= 20.0  # sigmoid x max_depth


def test_relative_distance_is_the_median_over_the_clipped_box() -> None:
    depth = np.arange(20, dtype=np.float32).reshape(4, 5)
    assert relative_distance(depth, (0, 0, 5, 4)) == pytest.approx(9.5)
    assert relative_distance(depth, (1.2, 0.5, 2.8, 1.5)) == pytest.approx(
        np.median(depth[0:2, 1:3])
    )
    assert relative_distance(depth, (-10, -10, 1, 1)) == pytest.approx(0.0)
    assert relative_distance(depth, (4.5, 3.5, 99, 99)) == pytest.approx(19.0)
    for box in [(10, 10, 20, 20), (3, 3, 3, 3), (0, 0, float("nan"), 2)]:
        with pytest.raises(InvalidInput):
            relative_distance(depth, box)


def test_empty_batch_and_bad_images(estimator: DepthAnythingEstimator) -> None:
    assert estimator.estimate_depth([]) == []
    with pytest.raises(InvalidInput):
        estimator.estimate_depth([np.zeros((10, 10, 4), dtype=np.uint8)])


@pytest.mark.parametrize("shape", [(3, 20, 3), (1, 1, 3), (3, 3, 3)])
def test_tiny_images(estimator: DepthAnythingEstimator, shape: tuple[int, ...]) -> None:
    # A height of 1 or 3 is not mistaken for a channels-first image.
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    (depth,) = estimator.estimate_depth([image])
    assert depth.shape == shape[:2]


@pytest.mark.parametrize("shape", [(1, 40, 3), (40, 1, 3)])
def test_too_thin_images_rejected(
    estimator: DepthAnythingEstimator, shape: tuple[int, ...]
) -> None:
    # Keeping the aspect ratio, the short side rounds to zero patches.
    with pytest.raises(InvalidInput):
        estimator.estimate_depth([np.zeros(shape, dtype=np.uint8)])


def test_half_precision_path(tiny_path: Path, estimator: DepthAnythingEstimator) -> None:
    """CUDA runs bf16 weights (no GPU here: the same dtype on the CPU); maps stay float32."""
    half = make_adapter(DepthAnythingEstimator, tiny_path)
    half.dtype = torch.bfloat16
    half.load()
    assert half.memory_bytes() < 0.55 * estimator.memory_bytes()  # int buffers stay int
    image = skimage.data.chelsea()
    (depth,) = half.estimate_depth([image])
    assert depth.dtype == np.float32 and depth.shape == image.shape[:2]
    np.testing.assert_allclose(depth, estimator.estimate_depth([image])[0], atol=0.05)
