"""Image classifiers (ViT, ResNet) against tiny random checkpoints: parity with transformers'
image-classification pipeline, softmax vs sigmoid, options and validation (memory, unload and
corrupt weights: test_contract.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
from PIL import Image as PilImage
from transformers import pipeline

from tests.conftest import TinyModels
from tests.families.adapters import load_adapter, make_adapter
from tests.tiny.resnet_classifier import VEHICLES
from tests.tiny.vit_classifier import WEATHER
from zooserve.core.errors import ConfigError, InvalidInput, ModelLoadFailed
from zooserve.families.hf.image_classifier import ImageClassifier

FAMILIES = {"vit_classifier": WEATHER, "resnet_classifier": VEHICLES}


def make(family: str, path: Path, **options: Any) -> ImageClassifier:
    return make_adapter(ImageClassifier, path, family, options=options)


def loaded(family: str, path: Path, **options: Any) -> ImageClassifier:
    return load_adapter(ImageClassifier, path, family, options=options)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    # Different sizes and aspect ratios: resize and centre-crop must match the reference.
    return [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]


@pytest.fixture(scope="module")
def vit_path(tiny_models: TinyModels) -> Path:
    return tiny_models.path("vit_classifier")


def _pipeline_scores(path: Path, images: list[np.ndarray]) -> list[dict[str, float]]:
    """transformers' image-classification pipeline, one PIL image at a time, every class."""
    classify = pipeline("image-classification", model=str(path), device="cpu")
    num_labels = classify.model.config.num_labels
    return [
        {
            row["label"]: row["score"]
            for row in classify(PilImage.fromarray(image), top_k=num_labels)
        }
        for image in images
    ]


def _assert_same_scores(got: list[dict[str, float]], expected: list[dict[str, float]]) -> None:
    assert len(got) == len(expected)
    for scores, reference in zip(got, expected, strict=True):
        assert set(scores) == set(reference)
        for label, score in reference.items():
            assert scores[label] == pytest.approx(score, abs=1e-4), label
        values = list(scores.values())
        assert values == sorted(values, reverse=True), "not sorted high to low"


@pytest.mark.parametrize("family", FAMILIES)
def test_parity_with_transformers_pipeline(
    family: str, tiny_models: TinyModels, images: list[np.ndarray]
) -> None:
    path = tiny_models.path(family)
    got = loaded(family, path).classify(images)
    _assert_same_scores(got, _pipeline_scores(path, images))
    assert make(family, path).family == "vit_classifier"  # both family ids share one adapter
    for scores in got:
        assert list(scores) != [] and set(scores) == set(FAMILIES[family])
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)  # softmax
    # Random weights still tell these images apart: the pixels reach the model.
    assert got[0] != pytest.approx(got[1], abs=1e-4)


def test_multi_label_head_uses_sigmoid(
    vit_path: Path, tmp_path: Path, images: list[np.ndarray]
) -> None:
    multi = tmp_path / "vit-multi-label"
    shutil.copytree(vit_path, multi)
    config = json.loads((multi / "config.json").read_text())
    config["problem_type"] = "multi_label_classification"
    (multi / "config.json").write_text(json.dumps(config))

    got = loaded("vit_classifier", multi).classify(images)
    _assert_same_scores(got, _pipeline_scores(multi, images))
    assert all(abs(sum(scores.values()) - 1.0) > 0.1 for scores in got)  # independent scores


def test_regression_head_is_refused(vit_path: Path, tmp_path: Path) -> None:
    regression = tmp_path / "vit-regression"
    shutil.copytree(vit_path, regression)
    config = json.loads((regression / "config.json").read_text())
    config["problem_type"] = "regression"
    (regression / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadFailed):
        loaded("vit_classifier", regression)


def test_top_k_and_batch_size_options(vit_path: Path, images: list[np.ndarray]) -> None:
    full = loaded("vit_classifier", vit_path).classify(images)
    assert len(full[0]) == len(WEATHER)
    top_two = loaded("vit_classifier", vit_path, top_k=2).classify(images)
    one_at_a_time = loaded("vit_classifier", vit_path, batch_size=1).classify(images)
    for best, everything in zip(top_two, full, strict=True):
        assert list(best) == list(everything)[:2]
        assert list(best.values()) == pytest.approx(list(everything.values())[:2], abs=1e-6)
    for single, batched in zip(one_at_a_time, full, strict=True):
        assert list(single) == list(batched)
        assert list(single.values()) == pytest.approx(list(batched.values()), abs=1e-5)


@pytest.mark.parametrize("options", [{"top_k": 0}, {"top_k": "3"}, {"batch_size": -1}])
def test_bad_options_name_the_key(vit_path: Path, options: dict[str, Any]) -> None:
    # batch_size is one of the options every model has: the config itself refuses it.
    with pytest.raises((ConfigError, ValueError), match=f"options.{next(iter(options))}"):
        make("vit_classifier", vit_path, **options)


def test_labels_select_known_classes(vit_path: Path, images: list[np.ndarray]) -> None:
    classifier = loaded("vit_classifier", vit_path)
    full = classifier.classify(images)
    chosen = classifier.classify(images, labels=["sunny", "foggy"])
    for subset, everything in zip(chosen, full, strict=True):
        assert set(subset) == {"sunny", "foggy"}
        assert subset == {label: everything[label] for label in subset}  # not renormalised
    assert classifier.classify(images, labels=[]) == full
    with pytest.raises(InvalidInput) as error:
        classifier.classify(images, labels=["sunny", "tornado"])
    assert error.value.details["unknown"] == ["tornado"]


def test_bad_images_rejected_and_empty_batch(vit_path: Path) -> None:
    classifier = loaded("vit_classifier", vit_path)
    assert classifier.classify([]) == []
    with pytest.raises(InvalidInput):
        classifier.classify([np.zeros((10, 10), dtype=np.uint8)])
    with pytest.raises(InvalidInput):
        classifier.classify([skimage.data.chelsea(), np.zeros((0, 4, 3), dtype=np.uint8)])
