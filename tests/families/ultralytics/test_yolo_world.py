"""YOLO-World adapter against a tiny random checkpoint built offline: parity with the hand-run
ultralytics pipeline, BGR input, vocabulary cache, the text encoder (output contract, thresholds
and bad input: test_open_vocabulary.py; memory, unload and corrupt weights: test_contract.py;
the missing extra: test_ultralytics_extra.py).

These tests need ultralytics (AGPL, optional extra): they skip through the `tiny_path` fixture.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from tests.families.adapters import make_adapter
from tests.families.detections import assert_matches_reference
from zooserve.core.errors import MissingDependency, ModelUnavailable
from zooserve.families import adapter_class
from zooserve.families.ultralytics.yolo_world import YoloWorldDetector

PROMPTS = ["a person", "a cat"]


def _detector(weights: Path, text_encoder: Path | None) -> YoloWorldDetector:
    options = {"text_encoder": str(text_encoder)} if text_encoder else {}
    return make_adapter(YoloWorldDetector, weights, framework="ultralytics", options=options)


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    pytest.importorskip("ultralytics")
    return tiny_models.path("yolo_world")


@pytest.fixture(scope="module")
def detector(tiny_path: Path) -> YoloWorldDetector:
    det = _detector(tiny_path / "yolo_world.pt", tiny_path / "clip")
    det.load()
    return det


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    # Different sizes, one non-square (chelsea is 300x451): letterboxing must be undone.
    return [skimage.data.astronaut(), skimage.data.chelsea()]


def _reference(path: Path, images: list[np.ndarray], threshold: float) -> list[dict]:
    """The documented ultralytics flow by hand, its own instances; embeddings from CLIPModel."""
    from transformers import CLIPModel, CLIPTokenizer
    from ultralytics import YOLOWorld

    tokenizer = CLIPTokenizer.from_pretrained(path / "clip", local_files_only=True)
    clip = CLIPModel.from_pretrained(path / "clip", local_files_only=True).eval()
    tokens = tokenizer(PROMPTS, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        feats = clip.get_text_features(**tokens)
        feats = getattr(feats, "pooler_output", feats)
    model = YOLOWorld(str(path / "yolo_world.pt"))
    # What WorldModel.set_classes stores: unit-norm (1, n, 512) features and the head's nc.
    model.model.txt_feats = torch.nn.functional.normalize(feats, dim=-1).reshape(1, 2, -1)
    model.model.model[-1].nc = len(PROMPTS)
    model.model.names = PROMPTS
    bgr = [image[..., ::-1].copy() for image in images]  # ultralytics reads numpy as BGR
    results = model.predict(bgr, conf=threshold, device="cpu", verbose=False)
    return [
        {
            "boxes": r.boxes.xyxy.numpy(),
            "scores": r.boxes.conf.numpy(),
            "labels": r.boxes.cls.numpy().astype(int).tolist(),
        }
        for r in results
    ]


def test_registry_resolves_family() -> None:
    assert adapter_class("yolo_world") is YoloWorldDetector
    assert YoloWorldDetector.family == "yolo_world"
    assert YoloWorldDetector.kind == "detector"


@pytest.mark.parametrize("threshold", [0.0, 3e-5])
def test_parity_with_ultralytics_pipeline(
    detector: YoloWorldDetector, tiny_path: Path, images: list[np.ndarray], threshold: float
) -> None:
    got = detector.detect(images, PROMPTS, threshold=threshold)
    expected = _reference(tiny_path, images, threshold)
    assert len(got) == len(images)
    assert_matches_reference(
        got, expected, PROMPTS, box_atol=1e-3, score_atol=1e-6, score_rtol=1e-4
    )


def test_rgb_input_is_flipped_to_bgr(detector: YoloWorldDetector) -> None:
    image = skimage.data.astronaut()
    batch = detector.preprocess([image], PROMPTS)
    np.testing.assert_array_equal(batch.frames[0], image[..., ::-1])


def test_vocabulary_cached_until_prompts_change(
    detector: YoloWorldDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    encode = detector._encode

    def spy(prompts: list[str]) -> torch.Tensor:
        calls.append(prompts)
        return encode(prompts)

    monkeypatch.setattr(detector, "_encode", spy)
    image = [skimage.data.chelsea()]
    detector.detect(image, ["a dog"], threshold=0.0)
    detector.detect(image, ["a dog"], threshold=0.0)
    assert calls == [["a dog"]]
    (det,) = detector.detect(image, ["a cat", "a dog", "a hat"], threshold=0.0)
    assert calls == [["a dog"], ["a cat", "a dog", "a hat"]]
    assert detector.model.model.model[-1].nc == 3
    assert set(det.data["class_name"]) <= {"a cat", "a dog", "a hat"}


def test_empty_batch(detector: YoloWorldDetector) -> None:
    assert detector.detect([], PROMPTS, threshold=0.0) == []


def test_memory_counts_model_and_text_encoder(detector: YoloWorldDetector) -> None:
    """test_contract.py sums the bytes of `torch_modules()`: both networks must be in it."""
    modules = detector.torch_modules()
    assert modules[0] is detector.model.model and modules[1] is detector.text_encoder


@pytest.mark.skipif(importlib.util.find_spec("clip") is not None, reason="clip is installed")
def test_without_text_encoder_needs_clip(tiny_path: Path) -> None:
    det = _detector(tiny_path / "yolo_world.pt", None)
    det.load()
    with pytest.raises(MissingDependency, match="text_encoder"):
        det.detect([skimage.data.chelsea()], PROMPTS, threshold=0.0)


def test_missing_checkpoint_is_unavailable(tmp_path: Path, tiny_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        _detector(tmp_path / "yolov8s-worldv2.pt", None).load()
