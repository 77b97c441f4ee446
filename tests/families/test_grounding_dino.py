"""Grounding DINO adapter on a tiny random checkpoint: parity with transformers, shapes, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import AutoProcessor, GroundingDinoForObjectDetection

from zooserve.catalog import ModelSpec
from zooserve.errors import InvalidInput
from zooserve.families.grounding_dino import GroundingDinoDetector

PROMPTS = ["a person", "a cat"]
#: Low enough that the random tiny model returns boxes on both images.
THRESHOLD = 0.3
TEXT_THRESHOLD = 0.25


def _spec(path: Path) -> ModelSpec:
    return ModelSpec(name="gdino-tiny", model_id=str(path), family="grounding_dino")


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    return tiny_models.path("grounding_dino")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [skimage.data.astronaut(), skimage.data.chelsea()]


@pytest.fixture(scope="module")
def detector(tiny_path: Path) -> GroundingDinoDetector:
    adapter = GroundingDinoDetector(_spec(tiny_path), source=str(tiny_path), device="cpu")
    adapter.load()
    return adapter


def test_parity_with_transformers(detector, tiny_path, images) -> None:
    processor = AutoProcessor.from_pretrained(tiny_path, local_files_only=True)
    model = GroundingDinoForObjectDetection.from_pretrained(tiny_path, local_files_only=True)
    model.eval()
    inputs = processor(images=images, text=["a person. a cat."] * len(images), return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    sizes = [image.shape[:2] for image in images]
    expected = processor.post_process_grounded_object_detection(
        outputs, threshold=THRESHOLD, text_threshold=TEXT_THRESHOLD, target_sizes=sizes
    )

    got = detector.detect(images, PROMPTS, THRESHOLD)

    assert len(got) == len(images)
    for result, dets, (height, width) in zip(expected, got, sizes, strict=True):
        assert len(dets) == len(result["scores"]) > 0
        # The adapter clips boxes to the image; the reference does not.
        boxes = result["boxes"].numpy().copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        np.testing.assert_allclose(dets.xyxy, boxes, atol=1e-4, rtol=0)
        np.testing.assert_allclose(dets.confidence, result["scores"].numpy(), atol=1e-4, rtol=0)


def test_output_types_and_bounds(detector, images) -> None:
    results = detector.detect(images, PROMPTS, THRESHOLD)
    for dets, image in zip(results, images, strict=True):
        height, width = image.shape[:2]
        assert dets.xyxy.dtype == np.float32 and dets.xyxy.shape == (len(dets), 4)
        assert dets.confidence is not None and dets.confidence.shape == (len(dets),)
        assert (dets.confidence > THRESHOLD).all()
        assert (dets.xyxy[:, [0, 2]] >= 0).all() and (dets.xyxy[:, [0, 2]] <= width).all()
        assert (dets.xyxy[:, [1, 3]] >= 0).all() and (dets.xyxy[:, [1, 3]] <= height).all()
        assert (dets.xyxy[:, 2] >= dets.xyxy[:, 0]).all()
        assert (dets.xyxy[:, 3] >= dets.xyxy[:, 1]).all()
        names = dets.data["class_name"]
        assert set(names) <= set(PROMPTS)
        assert dets.class_id is not None
        assert [PROMPTS[i] for i in dets.class_id] == list(names)


def test_label_mapping(detector) -> None:
    """Text labels that are sub-spans, multi-phrase runs or empty still land on one prompt."""
    batch = detector.preprocess([np.zeros((32, 32, 3), np.uint8)], ["A Person", "a cat"])
    assert len(batch.spans) == 2
    _person, cat = batch.spans
    probs = torch.zeros(64)
    probs[cat] = 0.9  # the box's tokens point at "a cat"
    assert detector._match_prompt("cat", probs, batch) == 1
    assert detector._match_prompt("person", probs, batch) == 0  # text beats probabilities
    assert detector._match_prompt("a person", probs, batch) == 0
    assert detector._match_prompt("a", probs, batch) == 1  # ambiguous: probabilities decide
    assert detector._match_prompt("", probs, batch) == 1
    assert detector._match_prompt("a person. a cat. [SEP]", probs, batch) == 1


def test_prompts_are_required(detector, images) -> None:
    with pytest.raises(InvalidInput):
        detector.detect(images, None, THRESHOLD)
    with pytest.raises(InvalidInput):
        detector.detect(images, [], THRESHOLD)
    with pytest.raises(InvalidInput):
        detector.detect(images, [" . "], THRESHOLD)
