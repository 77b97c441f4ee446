"""What every open-vocabulary detector here (OWLv2, Grounding DINO, Florence-2, YOLO-World)
returns for text prompts, on tiny random checkpoints: boxes in input pixels, labels and class
ids from the prompts, the threshold rule (strictly greater is kept), and rejected input.

Parity with each model's own pipeline lives in the family's test file.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import skimage.data

from tests.conftest import TinyModels
from tests.families.adapters import load_adapter
from tests.families.detections import check_detections
from zooserve.core.errors import InvalidInput
from zooserve.families.base import Detector
from zooserve.families.hf.florence2 import Florence2Detector
from zooserve.families.hf.grounding_dino import GroundingDinoDetector
from zooserve.families.hf.owlv2 import Owlv2Detector
from zooserve.families.ultralytics.yolo_world import YoloWorldDetector

PROMPTS = ["a person", "a cat"]


def yolo_world(tiny_models: TinyModels) -> YoloWorldDetector:
    pytest.importorskip("ultralytics")
    path = tiny_models.path("yolo_world")
    options = {"text_encoder": str(path / "clip")}
    return load_adapter(
        YoloWorldDetector, path / "yolo_world.pt", framework="ultralytics", options=options
    )


DETECTORS: dict[str, Callable[[TinyModels], Detector]] = {
    "owlv2": lambda tiny_models: load_adapter(Owlv2Detector, tiny_models.path("owlv2")),
    "grounding_dino": lambda tiny_models: load_adapter(
        GroundingDinoDetector, tiny_models.path("grounding_dino")
    ),
    "florence2": lambda tiny_models: load_adapter(Florence2Detector, tiny_models.path("florence2")),
    "yolo_world": yolo_world,
}
#: Florence-2 without prompts detects its own closed vocabulary (see test_florence2.py).
PROMPTS_REQUIRED = ["owlv2", "grounding_dino", "yolo_world"]


@pytest.fixture(scope="module", params=list(DETECTORS))
def detector(request: pytest.FixtureRequest, tiny_models: TinyModels) -> Detector:
    return DETECTORS[request.param](tiny_models)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    # Different sizes, one non-square (chelsea is 300x451): padding or letterboxing is undone.
    return [skimage.data.astronaut(), skimage.data.chelsea()]


def test_output_contract(detector: Detector, images: list[np.ndarray]) -> None:
    results = detector.detect(images, PROMPTS, threshold=0.0)
    assert len(results) == len(images)
    for det, image in zip(results, images, strict=True):
        check_detections(det, image, PROMPTS)
        # The vocabulary is the prompts: class ids index them.
        assert [PROMPTS[i] for i in np.asarray(det.class_id)] == list(det.data["class_name"])


def test_threshold_filters(detector: Detector, images: list[np.ndarray]) -> None:
    everything = detector.detect(images, PROMPTS, threshold=0.0)
    scores = np.concatenate([np.asarray(d.confidence) for d in everything])
    cut = float(np.median(scores))
    kept = detector.detect(images, PROMPTS, threshold=cut)
    assert sum(len(d) for d in kept) == int((scores > cut).sum())
    assert all(bool(np.all(np.asarray(d.confidence) > cut)) for d in kept)


@pytest.mark.parametrize("prompts", [None, []])
@pytest.mark.parametrize("detector", PROMPTS_REQUIRED, indirect=True)
def test_missing_prompts_rejected(
    detector: Detector, images: list[np.ndarray], prompts: list[str] | None
) -> None:
    with pytest.raises(InvalidInput):
        detector.detect(images, prompts, threshold=0.0)


def test_non_rgb_image_rejected(detector: Detector) -> None:
    with pytest.raises(InvalidInput):
        detector.detect([np.zeros((10, 10), dtype=np.uint8)], PROMPTS, threshold=0.0)
