"""ViTPose adapter against a tiny random checkpoint: parity with transformers'
`post_process_pose_estimation` (COCO xywh boxes), shape and coordinates near each box,
batching by chunks, empty and bad boxes, half precision (memory, unload and corrupt weights:
test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import VitPoseForPoseEstimation, VitPoseImageProcessor

from tests.conftest import TinyModels
from tests.families.adapters import load_adapter, make_adapter
from zooserve.core.errors import InvalidInput
from zooserve.families.hf.vitpose import VitPoseEstimator

#: xyxy px in the astronaut (512x512): the person, the flag corner, a box at the image edge.
BOXES = np.array(
    [[140.0, 30.0, 470.0, 510.0], [20.0, 20.0, 120.0, 180.0], [400.5, 300.0, 512.0, 512.0]],
    dtype=np.float32,
)


@pytest.fixture(scope="module")
def tiny_path(tiny_models: TinyModels) -> Path:
    return tiny_models.path("vitpose")


@pytest.fixture(scope="module")
def estimator(tiny_path: Path) -> VitPoseEstimator:
    # batch_size 2 so three boxes take two forwards.
    return load_adapter(VitPoseEstimator, tiny_path, options={"batch_size": 2})


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return skimage.data.astronaut()


def _reference(path: Path, image: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
    """The documented transformers pipeline, by hand: COCO xywh boxes, all in one forward."""
    processor = VitPoseImageProcessor.from_pretrained(path, local_files_only=True)
    model = VitPoseForPoseEstimation.from_pretrained(path, local_files_only=True).eval()
    xywh = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in boxes_xyxy.tolist()]
    inputs = processor(images=[image], boxes=[xywh], return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    (people,) = processor.post_process_pose_estimation(outputs, boxes=[xywh])
    return np.stack(
        [np.concatenate([p["keypoints"].numpy(), p["scores"].numpy()[:, None]], 1) for p in people]
    )


def test_parity_with_post_process_pose_estimation(
    estimator: VitPoseEstimator, tiny_path: Path, image: np.ndarray
) -> None:
    got = estimator.estimate_pose(image, BOXES)
    expected = _reference(tiny_path, image, BOXES)
    assert got.shape == expected.shape == (len(BOXES), 17, 3)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert not np.allclose(got[0], got[1]), "different boxes gave the same keypoints"


def test_keypoints_lie_near_each_boxs_padded_crop(
    estimator: VitPoseEstimator, image: np.ndarray
) -> None:
    keypoints = estimator.estimate_pose(image, BOXES)
    crop_aspect = 48 / 64  # the tiny processor's width / height
    for box, person in zip(BOXES, keypoints, strict=True):
        width, height = box[2] - box[0], box[3] - box[1]
        # The processor widens the box to the crop's aspect ratio and pads it by 1.25.
        width, height = max(width, height * crop_aspect), max(height, width / crop_aspect)
        center_x, center_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        # Heatmap peaks lie in the crop; DARK refinement on random heatmaps can push a peak
        # past its edge, so allow a quarter of the crop on each side.
        assert (np.abs(person[:, 0] - center_x) <= 0.75 * 1.25 * width).all()
        assert (np.abs(person[:, 1] - center_y) <= 0.75 * 1.25 * height).all()
        assert np.isfinite(person).all()


def test_keypoints_follow_the_person_in_image_pixels(
    estimator: VitPoseEstimator, image: np.ndarray
) -> None:
    # The same pixels placed at (dx, dy) in a larger canvas give the same crops, so every
    # keypoint must move by exactly (dx, dy). (The third box is left out: its random heatmap
    # has two near-equal peaks, and float rounding in the shifted warp picks the other one.)
    boxes = BOXES[:2]
    dx, dy = 37, 90
    canvas = np.zeros((image.shape[0] + 150, image.shape[1] + 100, 3), dtype=np.uint8)
    canvas[dy : dy + image.shape[0], dx : dx + image.shape[1]] = image
    shifted = boxes + np.array([dx, dy, dx, dy], dtype=np.float32)
    original = estimator.estimate_pose(image, boxes)
    moved = estimator.estimate_pose(canvas, shifted)
    np.testing.assert_allclose(moved[..., 0], original[..., 0] + dx, atol=1e-2)
    np.testing.assert_allclose(moved[..., 1], original[..., 1] + dy, atol=1e-2)
    np.testing.assert_allclose(moved[..., 2], original[..., 2], atol=1e-4)


def test_one_box_matches_its_row_in_a_batch(estimator: VitPoseEstimator, image: np.ndarray) -> None:
    together = estimator.estimate_pose(image, BOXES)
    alone = estimator.estimate_pose(image, BOXES[1:2])
    np.testing.assert_allclose(alone[0], together[1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("boxes", [np.zeros((0, 4)), np.zeros((0,)), []])
def test_no_boxes_give_no_people(
    estimator: VitPoseEstimator, image: np.ndarray, boxes: np.ndarray
) -> None:
    result = estimator.estimate_pose(image, np.asarray(boxes))
    assert result.shape == (0, 17, 3) and result.dtype == np.float32


def test_degenerate_boxes_get_zero_scores_at_their_centre(
    estimator: VitPoseEstimator, image: np.ndarray
) -> None:
    # A detection clipped at the image edge can be under a pixel wide: no crop, score 0.
    boxes = np.array([BOXES[0], [511.6, 10.0, 512.0, 90.0], [5.0, 7.0, 5.0, 7.0], BOXES[1]])
    result = estimator.estimate_pose(image, boxes)
    assert result.shape == (4, 17, 3)
    np.testing.assert_allclose(result[[0, 3]], estimator.estimate_pose(image, BOXES[:2]), atol=1e-4)
    np.testing.assert_allclose(result[1], np.tile([511.8, 50.0, 0.0], (17, 1)), atol=1e-4)
    np.testing.assert_allclose(result[2], np.tile([5.0, 7.0, 0.0], (17, 1)), atol=1e-4)


@pytest.mark.parametrize(
    "boxes",
    [
        [[10.0, 10.0, 5.0, 50.0]],  # x2 < x1
        [[10.0, 10.0, 20.0, 9.0]],  # y2 < y1
        [[0.0, 0.0, float("nan"), 50.0]],
        [[0.0, 0.0, 50.0]],  # not xyxy
    ],
)
def test_bad_boxes_rejected(estimator: VitPoseEstimator, image: np.ndarray, boxes: list) -> None:
    with pytest.raises(InvalidInput):
        estimator.estimate_pose(image, np.asarray(boxes))


def test_bad_image_rejected(estimator: VitPoseEstimator) -> None:
    with pytest.raises(InvalidInput):
        estimator.estimate_pose(np.zeros((64, 64), dtype=np.uint8), BOXES[:1])


def test_image_three_pixels_high(estimator: VitPoseEstimator) -> None:
    # Not mistaken for a channels-first image.
    image = np.random.default_rng(0).integers(0, 256, (3, 40, 3), dtype=np.uint8)
    keypoints = estimator.estimate_pose(image, np.array([[0.0, 0.0, 40.0, 3.0]]))
    assert keypoints.shape == (1, 17, 3) and np.isfinite(keypoints).all()


def test_half_precision_path(tiny_path: Path, estimator: VitPoseEstimator) -> None:
    """CUDA runs bf16 weights (no GPU here: the same dtype on the CPU); keypoints stay float32.
    Random heatmaps have near-tied peaks, so only the shape and dtype are compared."""
    half = make_adapter(VitPoseEstimator, tiny_path)
    half.dtype = torch.bfloat16
    half.load()
    assert half.memory_bytes() < 0.55 * estimator.memory_bytes()  # int buffers stay int
    keypoints = half.estimate_pose(skimage.data.astronaut(), BOXES)
    assert keypoints.dtype == np.float32 and keypoints.shape == (len(BOXES), 17, 3)
    assert np.isfinite(keypoints).all()
