"""RF-DETR adapter on a tiny random checkpoint: parity with transformers' own post-processing,
labels from the checkpoint's `id2label`, prompts that filter labels, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import AutoImageProcessor, RfDetrForObjectDetection

from tests.families.adapters import load_adapter
from tests.tiny.rf_detr import LABELS
from zooserve.core.errors import InvalidInput
from zooserve.families.hf.rf_detr import RfDetrDetector

#: The tiny model's scores spread around 0.5 (its classifier bias is zero).
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    return tiny_models.path("rf_detr")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [skimage.data.astronaut(), skimage.data.chelsea()]


@pytest.fixture(scope="module")
def detector(tiny_path: Path) -> RfDetrDetector:
    return load_adapter(RfDetrDetector, tiny_path)


def test_parity_with_transformers(detector, tiny_path, images) -> None:
    processor = AutoImageProcessor.from_pretrained(tiny_path, local_files_only=True)
    model = RfDetrForObjectDetection.from_pretrained(tiny_path, local_files_only=True).eval()
    sizes = [image.shape[:2] for image in images]
    with torch.inference_mode():
        outputs = model(**processor(images=images, return_tensors="pt"))
    expected = processor.post_process_object_detection(
        outputs, threshold=THRESHOLD, target_sizes=sizes
    )

    got = detector.detect(images, None, THRESHOLD)

    assert len(got) == len(images)
    for result, dets, (height, width) in zip(expected, got, sizes, strict=True):
        assert len(dets) == len(result["scores"]) > 0
        boxes = result["boxes"].numpy().copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)  # the adapter clips to the frame
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        np.testing.assert_allclose(dets.xyxy, boxes, atol=1e-4, rtol=0)
        np.testing.assert_allclose(dets.confidence, result["scores"].numpy(), atol=1e-4, rtol=0)
        names = [LABELS[int(i)] for i in result["labels"]]
        assert list(dets.data["class_name"]) == names
        assert list(dets.class_id) == [int(i) for i in result["labels"]]


def test_prompts_keep_only_named_labels(detector, images) -> None:
    everything = detector.detect(images[:1], None, THRESHOLD)[0]
    present = sorted(set(everything.data["class_name"]))
    assert len(present) >= 2, "the tiny model should report several labels here"
    wanted = present[0]

    kept = detector.detect(images[:1], [f"A {wanted.upper()}"], THRESHOLD)[0]

    assert set(kept.data["class_name"]) == {wanted}
    assert len(kept) == int(np.sum(everything.data["class_name"] == wanted))


def test_not_open_vocabulary() -> None:
    assert RfDetrDetector.open_vocabulary is False


def test_grey_image_rejected(detector) -> None:
    with pytest.raises(InvalidInput):
        detector.detect([np.zeros((40, 40), np.uint8)], None, THRESHOLD)
