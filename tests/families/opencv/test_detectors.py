"""Detectors whose real weights ship inside opencv-python-headless 4.14, on real media."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from tests.families.adapters import load_adapter
from zooserve.families.base import Detector
from zooserve.families.opencv.detectors import opencv_source
from zooserve.media import MediaSource
from zooserve.media.samples import sample_files


def make(model_id: str, family: str, **options: object) -> Detector:
    source = opencv_source(model_id)
    assert source is not None, f"{model_id} does not ship with this OpenCV"
    return load_adapter(
        Detector, source, family, model_id=model_id, framework="opencv", options=options
    )


def test_face_cascade_finds_the_astronauts_face() -> None:
    faces = make("opencv:haarcascade_frontalface_default.xml", "opencv_cascade", label="face")
    (result,) = faces.detect([skimage.data.astronaut()], None, 0.5)
    assert list(result.data["class_name"]) == ["face"]
    x1, y1, x2, y2 = result.xyxy[0]
    assert 170 < x1 < x2 < 280 and 55 < y1 < y2 < 170  # her face, not the flag or the suit
    assert 0.5 <= result.confidence[0] <= 1.0
    assert faces.memory_bytes() > 100_000  # the cascade's XML


def test_hog_finds_a_pedestrian_in_bikes_mp4() -> None:
    with MediaSource.open(sample_files()["bikes.mp4"]) as video:
        (frame,) = video.read([60])
    people = make("opencv:hog_people", "opencv_hog", label="person")
    (result,) = people.detect([frame.image], None, 0.5)
    assert len(result) >= 1 and set(result.data["class_name"]) == {"person"}
    heights = result.xyxy[:, 3] - result.xyxy[:, 1]
    assert (heights >= 128).all()  # the HOG window is 64x128 px


def test_threshold_and_empty_frames() -> None:
    faces = make("opencv:haarcascade_frontalface_default.xml", "opencv_cascade", label="face")
    blank = np.zeros((120, 160, 3), np.uint8)
    assert [len(r) for r in faces.detect([blank, skimage.data.astronaut()], None, 0.5)] == [0, 1]
    assert len(faces.detect([skimage.data.astronaut()], None, 1.0)[0]) == 0


@pytest.mark.parametrize("missing", ["opencv:no_such_cascade.xml", "opencv:../../etc/passwd"])
def test_missing_cascade_is_unavailable(missing: str) -> None:
    assert opencv_source(missing) is None
