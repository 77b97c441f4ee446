"""YOLO (closed-vocabulary ultralytics) adapter against tiny random detect / segment / pose
checkpoints built offline: parity with ultralytics' own predict, masks, keypoints, pose
assignment, class filter, size estimate (memory, unload and corrupt weights: test_contract.py;
the missing extra: test_ultralytics_extra.py).

These tests need ultralytics (AGPL, optional extra): they skip through the `tiny_path` fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data

from tests.families.adapters import make_adapter
from tests.tiny.yolo import DAMAGE_NAMES, PLATE_NAMES
from zooserve.core.errors import ConfigError, InvalidInput, ModelUnavailable
from zooserve.families import adapter_class
from zooserve.families.kinds import PoseEstimator
from zooserve.families.ultralytics.yolo import YoloDetector

#: checkpoint -> a threshold at which the random weights find a handful of boxes
THRESHOLDS = {"plate.pt": 0.1, "damage-seg.pt": 0.5, "pose.pt": 0.25}


def _adapter(weights: Path, **options: Any) -> YoloDetector:
    return make_adapter(YoloDetector, weights, framework="ultralytics", options=options)


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    pytest.importorskip("ultralytics")
    return tiny_models.path("yolo")


@pytest.fixture(scope="module")
def adapters(tiny_path: Path) -> dict[str, YoloDetector]:
    loaded = {}
    for name in THRESHOLDS:
        loaded[name] = _adapter(tiny_path / name)
        loaded[name].load()
    return loaded


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    # Different sizes, one non-square: letterboxing must be undone for boxes and masks.
    return [skimage.data.astronaut(), skimage.data.rocket()]  # 512x512, 427x640


def _reference(path: Path, images: list[np.ndarray], threshold: float) -> list[Any]:
    """ultralytics' documented flow, its own instance: numpy input is BGR."""
    from ultralytics import YOLO

    bgr = [image[..., ::-1].copy() for image in images]
    return list(
        YOLO(str(path)).predict(bgr, conf=threshold, retina_masks=True, device="cpu", verbose=False)
    )


def test_registry_resolves_family() -> None:
    assert adapter_class("yolo") is YoloDetector
    assert YoloDetector.family == "yolo" and YoloDetector.kind == "detector"
    assert issubclass(YoloDetector, PoseEstimator) and not YoloDetector.open_vocabulary


def test_tasks_and_classes_come_from_the_checkpoint(adapters: dict[str, YoloDetector]) -> None:
    assert {name: a.task for name, a in adapters.items()} == {
        "plate.pt": "detect",
        "damage-seg.pt": "segment",
        "pose.pt": "pose",
    }
    assert adapters["plate.pt"].vocabulary == PLATE_NAMES
    assert adapters["damage-seg.pt"].vocabulary == DAMAGE_NAMES


@pytest.mark.parametrize("checkpoint", list(THRESHOLDS))
def test_parity_with_ultralytics_predict(
    adapters: dict[str, YoloDetector], tiny_path: Path, images: list[np.ndarray], checkpoint: str
) -> None:
    threshold = THRESHOLDS[checkpoint]
    adapter = adapters[checkpoint]
    got = adapter.detect(images, None, threshold)
    expected = _reference(tiny_path / checkpoint, images, threshold)
    assert sum(len(d) for d in got) > 0, "random model produced no boxes; lower the threshold"
    for det, ref, image in zip(got, expected, images, strict=True):
        classes = ref.boxes.cls.numpy().astype(int)
        np.testing.assert_array_equal(det.xyxy, ref.boxes.xyxy.numpy())
        np.testing.assert_array_equal(det.confidence, ref.boxes.conf.numpy())
        np.testing.assert_array_equal(det.class_id, classes)
        assert list(det.data["class_name"]) == [adapter.vocabulary[i] for i in classes]
        assert bool(np.all(np.asarray(det.confidence) > threshold))
        if adapter.task == "segment":
            assert det.mask is not None and det.mask.dtype == bool
            assert det.mask.shape == (len(det), *image.shape[:2])
            if len(det):
                np.testing.assert_array_equal(det.mask, ref.masks.data.numpy() > 0)
        else:
            assert det.mask is None
        if adapter.task == "pose":
            keypoints = det.data["keypoints"]
            assert keypoints.shape == (len(det), 17, 3) and keypoints.dtype == np.float32
            np.testing.assert_array_equal(keypoints, ref.keypoints.data.numpy())
        else:
            assert "keypoints" not in det.data


def test_masks_are_nonempty_and_inside_their_boxes(
    adapters: dict[str, YoloDetector], images: list[np.ndarray]
) -> None:
    (det,) = adapters["damage-seg.pt"].detect(images[1:], None, 0.5)
    assert len(det) > 0 and det.mask is not None
    assert det.mask.shape == (len(det), 427, 640)
    assert det.mask.any(axis=(1, 2)).all()
    for mask, (x1, y1, x2, y2) in zip(det.mask, det.xyxy, strict=True):
        ys, xs = np.nonzero(mask)
        assert xs.min() >= int(x1) - 1 and xs.max() <= x2 + 1
        assert ys.min() >= int(y1) - 1 and ys.max() <= y2 + 1


def test_class_filter_keeps_only_named_classes(tiny_path: Path, images: list[np.ndarray]) -> None:
    adapter = _adapter(tiny_path / "damage-seg.pt", classes=["dent", 2])
    adapter.load()
    everything = _reference(tiny_path / "damage-seg.pt", images[:1], 0.5)[0]
    (det,) = adapter.detect(images[:1], None, 0.5)
    wanted = np.isin(everything.boxes.cls.numpy(), [0, 2])
    assert 0 < len(det) < len(everything.boxes)
    assert set(det.data["class_name"]) <= {"dent", "crack"}
    np.testing.assert_array_equal(det.xyxy, everything.boxes.xyxy.numpy()[wanted])


def test_unknown_class_in_filter_is_a_config_error(tiny_path: Path) -> None:
    with pytest.raises(ConfigError, match="classes"):
        _adapter(tiny_path / "plate.pt", classes=["car"]).load()


def test_estimate_pose_assigns_each_box_its_pose(
    adapters: dict[str, YoloDetector], images: list[np.ndarray]
) -> None:
    pose = adapters["pose.pt"]
    image = images[0]
    (found,) = pose.detect([image], None, 0.25)
    assert len(found) >= 2
    # Two detected people in reverse order, a slightly shifted copy, and a box nobody is in.
    boxes = np.array([found.xyxy[1], found.xyxy[0] + 2.0, [0.0, 0.0, 4.0, 4.0]], dtype=np.float32)
    keypoints = pose.estimate_pose(image, boxes)
    assert keypoints.shape == (3, 17, 3) and keypoints.dtype == np.float32
    np.testing.assert_array_equal(keypoints[0], found.data["keypoints"][1])
    np.testing.assert_array_equal(keypoints[1], found.data["keypoints"][0])
    assert not keypoints[2].any()
    assert pose.estimate_pose(image, np.zeros((0, 4))).shape == (0, 17, 3)


def test_estimate_pose_rejects_bad_input(adapters: dict[str, YoloDetector]) -> None:
    image = skimage.data.astronaut()
    with pytest.raises(InvalidInput, match="boxes"):
        adapters["pose.pt"].estimate_pose(image, np.zeros((2, 3)))
    with pytest.raises(InvalidInput, match="pose checkpoint"):
        adapters["plate.pt"].estimate_pose(image, np.zeros((1, 4)))


def test_prompts_are_ignored(adapters: dict[str, YoloDetector], images: list[np.ndarray]) -> None:
    plate = adapters["plate.pt"]
    (with_prompts,) = plate.detect(images[:1], ["a cat"], 0.1)
    (without,) = plate.detect(images[:1], None, 0.1)
    assert len(without) > 0
    np.testing.assert_array_equal(with_prompts.xyxy, without.xyxy)


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_threshold_out_of_range_rejected(
    adapters: dict[str, YoloDetector], threshold: float
) -> None:
    with pytest.raises(InvalidInput, match="threshold"):
        adapters["plate.pt"].detect([skimage.data.astronaut()], None, threshold)


def test_non_rgb_image_rejected_and_empty_batch(adapters: dict[str, YoloDetector]) -> None:
    with pytest.raises(InvalidInput):
        adapters["plate.pt"].detect([np.zeros((10, 10), dtype=np.uint8)], None, 0.5)
    assert adapters["plate.pt"].detect([], None, 0.5) == []


def test_estimate_doubles_the_fp16_checkpoint(adapters: dict[str, YoloDetector]) -> None:
    adapter = adapters["damage-seg.pt"]
    weights = Path(adapter.source).stat().st_size
    assert YoloDetector.estimate_bytes(adapter.source, "cpu") == 2 * weights  # fp16 on disk


def test_missing_checkpoint_is_unavailable(tmp_path: Path, tiny_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        _adapter(tmp_path / "yolo11n-face.pt").load()
