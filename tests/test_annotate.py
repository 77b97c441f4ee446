"""Drawing detections for the dashboard: each distinct frame decoded once, and what is held
(one decoded frame, then the JPEGs) within max_decoded_mb. Real videos, no mocks."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv

from tests.videos import encode_video
from zooserve.core.errors import MediaTooLarge
from zooserve.media import MediaSource
from zooserve.media.annotate import jpeg_data_urls

PREFIX = "data:image/jpeg;base64,"


def _noise_video(path: Path, frames: int = 3) -> Path:
    rng = np.random.default_rng(1)
    return encode_video(path, (rng.integers(0, 255, (64, 64, 3), np.uint8) for _ in range(frames)))


def _box(x1: float, y1: float, x2: float, y2: float) -> sv.Detections:
    return sv.Detections(
        xyxy=np.array([[x1, y1, x2, y2]], np.float32),
        confidence=np.array([0.9], np.float32),
        class_id=np.zeros(1, int),
        data={"class_name": np.array(["person"])},
    )


def _decoded(url: str) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(url.removeprefix(PREFIX)), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image)


def test_each_distinct_frame_becomes_one_jpeg_with_its_boxes(tmp_path: Path) -> None:
    found = {2: _box(8, 8, 40, 40), 0: sv.Detections.empty()}
    with MediaSource.open(_noise_video(tmp_path / "clip.mp4")) as source:
        urls = jpeg_data_urls(source, found, limit_mb=16)
        plain = source.read([2])[0].image
    assert sorted(urls) == [0, 2] and all(url.startswith(PREFIX) for url in urls.values())
    drawn = cv2.cvtColor(_decoded(urls[2]), cv2.COLOR_BGR2RGB)
    assert drawn.shape == plain.shape
    edge = np.abs(drawn[8:40, 8].astype(int) - plain[8:40, 8].astype(int)).mean()
    inside = np.abs(drawn[20:28, 20:28].astype(int) - plain[20:28, 20:28].astype(int)).mean()
    assert edge > 3 * inside  # the box's left edge is drawn; the inside is the frame


@pytest.mark.parametrize(
    ("limit_mb", "what"),
    [(0.01, "1 frames of 64x64"), (0.02, "as JPEG")],  # a 64x64 frame decodes to 12 KB
)
def test_what_is_held_counts_against_max_decoded_mb(
    tmp_path: Path, limit_mb: float, what: str
) -> None:
    found = dict.fromkeys(range(6), sv.Detections.empty())  # ~5 KB of JPEG each
    video = _noise_video(tmp_path / "clip.mp4", frames=6)
    with MediaSource.open(video) as source, pytest.raises(MediaTooLarge) as refused:
        jpeg_data_urls(source, found, limit_mb=limit_mb)
    assert what in refused.value.message and "max_decoded_mb" in refused.value.message
