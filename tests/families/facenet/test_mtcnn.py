"""MTCNN adapter with the weights shipped inside facenet-pytorch, on real photos: finds the
astronaut's face (with landmarks), no face in a coffee cup, mixed-size batches, threshold,
float32 weights, missing weights (memory, unload and corrupt weights: test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from tests.families.adapters import make_adapter
from zooserve.catalog import ModelSpec
from zooserve.core.errors import InvalidInput, ModelUnavailable
from zooserve.families.facenet.mtcnn import WEIGHT_FILES, MtcnnFaceDetector


def _shipped_source() -> str:
    source = MtcnnFaceDetector.builtin_source("facenet-pytorch:mtcnn")
    assert source is not None, "facenet-pytorch should ship the MTCNN weights"
    return source


def _detector(source: str) -> MtcnnFaceDetector:
    adapter = make_adapter(MtcnnFaceDetector, source, model_id="facenet-pytorch:mtcnn")
    assert not adapter.open_vocabulary
    return adapter


@pytest.fixture(scope="module")
def detector() -> MtcnnFaceDetector:
    adapter = _detector(_shipped_source())
    adapter.load()
    return adapter


def _assert_astronaut_face(detections) -> None:
    assert len(detections) == 1
    x1, y1, x2, y2 = detections.xyxy[0]
    assert 150 <= x1 < x2 <= 300 and 50 <= y1 < y2 <= 200
    assert detections.confidence[0] > 0.9
    assert list(detections.data["class_name"]) == ["face"]
    assert list(detections.class_id) == [0]
    landmarks = detections.data["landmarks"]
    assert landmarks.shape == (1, 5, 2) and landmarks.dtype == np.float32
    # eyes, nose and mouth corners all lie inside the face box; eyes above the mouth
    assert ((landmarks[0, :, 0] >= x1) & (landmarks[0, :, 0] <= x2)).all()
    assert ((landmarks[0, :, 1] >= y1) & (landmarks[0, :, 1] <= y2)).all()
    assert landmarks[0, :2, 1].max() < landmarks[0, 3:, 1].min()


def test_finds_the_astronauts_face(detector: MtcnnFaceDetector) -> None:
    (faces,) = detector.detect([skimage.data.astronaut()], None, threshold=0.5)
    _assert_astronaut_face(faces)


def test_no_face_in_coffee(detector: MtcnnFaceDetector) -> None:
    (faces,) = detector.detect([skimage.data.coffee()], None, threshold=0.0)
    assert len(faces) == 0
    assert faces.xyxy.shape == (0, 4) and faces.data["landmarks"].shape == (0, 5, 2)


def test_mixed_size_batch(detector: MtcnnFaceDetector) -> None:
    astronaut = skimage.data.astronaut()
    tiny = np.zeros((12, 12, 3), dtype=np.uint8)  # below min_face_size: skipped, not a crash
    images = [skimage.data.coffee(), astronaut, tiny, np.ascontiguousarray(astronaut[:, ::-1])]
    coffee, face, nothing, mirrored = detector.detect(images, None, threshold=0.5)
    assert len(coffee) == 0 and len(nothing) == 0
    _assert_astronaut_face(face)
    # the mirrored copy ran in the same group as the original: its face mirrors too
    assert len(mirrored) == 1
    np.testing.assert_allclose(mirrored.xyxy[0, [2, 0]], 512 - face.xyxy[0, [0, 2]], atol=6)


def test_threshold_and_prompts(detector: MtcnnFaceDetector) -> None:
    head = skimage.data.astronaut()[:256, 64:320]  # a crop keeps the image pyramid small
    (faces,) = detector.detect([head], ["a cat"], threshold=0.5)  # prompts are ignored
    assert len(faces) == 1
    (none,) = detector.detect([head], None, threshold=float(faces.confidence[0]))
    assert len(none) == 0  # strictly greater than the threshold is kept


def test_non_rgb_image_rejected(detector: MtcnnFaceDetector) -> None:
    with pytest.raises(InvalidInput):
        detector.detect([np.zeros((40, 40), dtype=np.uint8)], None, threshold=0.5)
    assert detector.detect([], None, threshold=0.5) == []


def test_weights_are_float32_and_estimated_by_their_files(detector: MtcnnFaceDetector) -> None:
    (module,) = detector.torch_modules()
    tensors = [*module.parameters(), *module.buffers()]
    assert all(t.dtype.is_floating_point and t.element_size() == 4 for t in tensors)
    source = detector.source
    assert MtcnnFaceDetector.estimate_bytes(source, "cuda:0") == sum(
        (Path(source) / name).stat().st_size for name in WEIGHT_FILES.values()
    )


def test_stays_float32_on_cuda() -> None:
    """Constructing touches no device, so the CUDA choice is checked without a GPU: MTCNN keeps
    fp32 there (torchvision's NMS has no bf16 kernel)."""
    spec = ModelSpec(name="mtcnn", model_id="facenet-pytorch:mtcnn", family="mtcnn")
    assert MtcnnFaceDetector(spec, _shipped_source(), "cuda:0").dtype == torch.float32


def test_weights_come_from_the_source(tmp_path: Path) -> None:
    assert MtcnnFaceDetector.builtin_source("facenet-pytorch:other") is None
    with pytest.raises(ModelUnavailable):
        _detector(str(tmp_path)).load()
