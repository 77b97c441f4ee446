"""SAM 3 detector on a tiny random `Sam3Model`: parity with transformers' instance
post-processing (boxes, scores, masks) for several images x several concepts, labels from the
prompts, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import Sam3Model, Sam3Processor

from tests.families.adapters import load_adapter
from zooserve.core.errors import InvalidInput
from zooserve.families.hf.sam3 import MASK_THRESHOLD, Sam3Detector

PROMPTS = ["person", "cat"]
#: The tiny model's scores (class x presence probability) sit around 0.25.
THRESHOLD = 0.2


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    return tiny_models.path("sam3")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [skimage.data.astronaut()[::2, ::2], skimage.data.chelsea()]


@pytest.fixture(scope="module")
def detector(tiny_path: Path) -> Sam3Detector:
    return load_adapter(Sam3Detector, tiny_path)


def reference(path: Path, image: np.ndarray, prompt: str) -> dict[str, torch.Tensor]:
    """transformers' documented flow for one image and one concept."""
    processor = Sam3Processor.from_pretrained(path, local_files_only=True)
    model = Sam3Model.from_pretrained(path, local_files_only=True).eval()
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    result: dict[str, torch.Tensor] = processor.post_process_instance_segmentation(
        outputs, threshold=THRESHOLD, mask_threshold=MASK_THRESHOLD, target_sizes=[image.shape[:2]]
    )[0]
    return result


def test_parity_with_transformers(detector, tiny_path, images) -> None:
    got = detector.detect(images, PROMPTS, THRESHOLD)

    assert len(got) == len(images)
    for dets, image in zip(got, images, strict=True):
        height, width = image.shape[:2]
        expected = [reference(tiny_path, image, prompt) for prompt in PROMPTS]
        counts = [len(r["scores"]) for r in expected]
        assert len(dets) == sum(counts) > 0
        labels = [p for p, n in zip(PROMPTS, counts, strict=True) for _ in range(n)]
        assert list(dets.data["class_name"]) == labels
        boxes = torch.cat([r["boxes"] for r in expected]).numpy().copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)  # the adapter clips to the frame
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        np.testing.assert_allclose(dets.xyxy, boxes, atol=1e-4, rtol=0)
        scores = torch.cat([r["scores"] for r in expected]).numpy()
        np.testing.assert_allclose(dets.confidence, scores, atol=1e-4, rtol=0)
        masks = torch.cat([r["masks"] for r in expected]).bool().numpy()
        assert dets.mask is not None and dets.mask.shape == (len(dets), height, width)
        # Batched pairs vs one pair per forward: float noise may flip a pixel at the threshold.
        assert float(np.mean(dets.mask != masks)) <= 1e-4
        assert 0.0 < float(dets.mask.mean()) < 1.0, "trivial masks prove nothing"


@pytest.mark.parametrize("prompts", [None, [], ["  "]])
def test_a_concept_is_required(detector, images, prompts) -> None:
    with pytest.raises(InvalidInput):
        detector.detect(images[:1], prompts, THRESHOLD)


def test_open_vocabulary() -> None:
    assert Sam3Detector.open_vocabulary is True
