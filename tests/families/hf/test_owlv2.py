"""OWLv2 adapter against a tiny random checkpoint: parity with the hand-run transformers
pipeline, truncated prompts (output contract, thresholds and bad input:
test_open_vocabulary.py; memory, unload and corrupt weights: test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import Owlv2ForObjectDetection, Owlv2Processor

from tests.families.adapters import load_adapter
from tests.families.detections import assert_matches_reference
from zooserve.families.hf.owlv2 import Owlv2Detector

PROMPTS = ["a person", "a cat"]


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    return tiny_models.path("owlv2")


@pytest.fixture(scope="module")
def detector(tiny_path: Path) -> Owlv2Detector:
    return load_adapter(Owlv2Detector, tiny_path)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    # Different sizes, one non-square (chelsea is 300x451): the pad-to-square matters.
    return [skimage.data.astronaut(), skimage.data.chelsea()]


def _reference(path: Path, images: list[np.ndarray], threshold: float) -> list[dict]:
    """The documented transformers pipeline, by hand, with its own model instance."""
    processor = Owlv2Processor.from_pretrained(path, local_files_only=True)
    model = Owlv2ForObjectDetection.from_pretrained(path, local_files_only=True).eval()
    inputs = processor(text=[PROMPTS] * len(images), images=images, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    # Docs: target_sizes are the original (height, width); OWLv2 scales by the longer side.
    target_sizes = torch.tensor([image.shape[:2] for image in images])
    results = processor.image_processor.post_process_object_detection(
        outputs=outputs, threshold=threshold, target_sizes=target_sizes
    )
    for result, image in zip(results, images, strict=True):
        height, width = image.shape[:2]
        boxes = result["boxes"].numpy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        result["boxes"] = boxes
    return results


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_parity_with_transformers_pipeline(
    detector: Owlv2Detector, tiny_path: Path, images: list[np.ndarray], threshold: float
) -> None:
    got = detector.detect(images, PROMPTS, threshold=threshold)
    expected = _reference(tiny_path, images, threshold)
    assert len(got) == len(images)
    assert_matches_reference(got, expected, PROMPTS, box_atol=1e-4, score_atol=1e-4)


def test_empty_batch_and_long_prompt(detector: Owlv2Detector) -> None:
    assert detector.detect([], PROMPTS, threshold=0.0) == []
    # Longer than the text model's 16 positions: truncated instead of crashing the forward.
    long_prompt = "a very long prompt that goes on and on well past sixteen tokens"
    (det,) = detector.detect([skimage.data.chelsea()], [long_prompt], threshold=0.0)
    assert set(det.data["class_name"]) <= {long_prompt}
