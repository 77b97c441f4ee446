"""Grounding DINO adapter on a tiny random checkpoint: parity with transformers, label mapping,
prompts (output contract, thresholds and bad input: test_open_vocabulary.py; memory, unload and
corrupt weights: test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import AutoProcessor, GroundingDinoForObjectDetection

from tests.families.adapters import load_adapter
from zooserve.core.errors import InvalidInput
from zooserve.families.hf.grounding_dino import GroundingDinoDetector

PROMPTS = ["a person", "a cat"]
#: Low enough that the random tiny model returns boxes on both images.
THRESHOLD = 0.3
TEXT_THRESHOLD = 0.25


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    return tiny_models.path("grounding_dino")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [skimage.data.astronaut(), skimage.data.chelsea()]


@pytest.fixture(scope="module")
def detector(tiny_path: Path) -> GroundingDinoDetector:
    return load_adapter(GroundingDinoDetector, tiny_path)


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


def test_prompts_without_words_rejected(detector, images) -> None:
    with pytest.raises(InvalidInput):
        detector.detect(images, [" . "], THRESHOLD)
