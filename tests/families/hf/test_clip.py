"""CLIP / SigLIP / SigLIP 2 adapter against tiny random checkpoints: zero-shot parity with
transformers' pipeline (softmax for CLIP, sigmoid for SigLIP), embeddings against the model's
own towers, options and validation (memory, unload and corrupt weights: test_contract.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image as PilImage
from transformers import AutoModel, AutoProcessor, pipeline

from tests.conftest import TinyModels
from tests.families.adapters import load_adapter, make_adapter
from tests.tiny import siglip
from tests.tiny.clip import PROJECTION_DIM
from zooserve.core.errors import ConfigError, InvalidInput, ModelLoadFailed
from zooserve.families.hf.clip import ClipModel
from zooserve.families.kinds import Classifier, Embedder

LABELS = ["dark hoodie", "face mask", "gloves", "delivery uniform"]
#: Embedding size of each tiny model: CLIP's projection_dim, SigLIP's hidden size.
DIMENSIONS = {"clip": PROJECTION_DIM, "siglip": siglip.HIDDEN_SIZE, "siglip2": siglip.HIDDEN_SIZE}
VARIANTS = list(DIMENSIONS)


@pytest.fixture(scope="module")
def paths(tiny_models: TinyModels) -> dict[str, Path]:
    return {variant: tiny_models.path(variant) for variant in VARIANTS}


@pytest.fixture(scope="module")
def adapters(paths: dict[str, Path]) -> dict[str, ClipModel]:
    return {variant: loaded(path) for variant, path in paths.items()}


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    # Square and non-square (SigLIP 2 keeps the aspect ratio with a variable patch grid).
    return [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]


def make(path: Path, **options: Any) -> ClipModel:
    return make_adapter(ClipModel, path, options=options)


def loaded(path: Path, **options: Any) -> ClipModel:
    return load_adapter(ClipModel, path, options=options)


@pytest.fixture(scope="module")
def pipelines(paths: dict[str, Path]) -> dict[str, Any]:
    """transformers' zero-shot-image-classification pipeline for each tiny model."""
    return {
        variant: pipeline("zero-shot-image-classification", model=str(path), device="cpu")
        for variant, path in paths.items()
    }


@pytest.mark.parametrize("template", [None, "a person wearing {}"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_shot_parity_with_transformers_pipeline(
    variant: str,
    template: str | None,
    paths: dict[str, Path],
    adapters: dict[str, ClipModel],
    pipelines: dict[str, Any],
    images: list[np.ndarray],
) -> None:
    adapter = adapters[variant] if template is None else loaded(paths[variant], template=template)
    got = adapter.classify(images, LABELS)
    classify = pipelines[variant]
    for scores, image in zip(got, images, strict=True):
        expected = classify(
            PilImage.fromarray(image),
            candidate_labels=LABELS,
            hypothesis_template=template or "a photo of {}",
        )
        assert set(scores) == set(LABELS)
        for row in expected:
            assert scores[row["label"]] == pytest.approx(row["score"], abs=1e-4), row["label"]
        values = list(scores.values())
        assert values == sorted(values, reverse=True)
        # CLIP: softmax over the candidates; SigLIP: an independent sigmoid per label.
        if variant == "clip":
            assert sum(values) == pytest.approx(1.0, abs=1e-5)
        else:
            assert abs(sum(values) - 1.0) > 0.1
    assert got[0] != pytest.approx(got[1], abs=1e-4), "the images do not reach the model"


@pytest.mark.parametrize("variant", VARIANTS)
def test_embeddings_match_the_model_towers(
    variant: str, paths: dict[str, Path], adapters: dict[str, ClipModel], images: list[np.ndarray]
) -> None:
    adapter = adapters[variant]
    image_vectors = adapter.embed_images(images)
    text_vectors = adapter.embed_texts(LABELS)
    dimension = DIMENSIONS[variant]
    assert image_vectors.dtype == text_vectors.dtype == np.float32
    assert image_vectors.shape == (len(images), dimension)
    assert text_vectors.shape == (len(LABELS), dimension)
    np.testing.assert_allclose(np.linalg.norm(image_vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text_vectors, axis=1), 1.0, atol=1e-5)

    # Reference: the model's own forward over both towers; its logits are
    # scale * cos(image, text) (+ bias for SigLIP), so the two vector sets share one space.
    processor = AutoProcessor.from_pretrained(paths[variant], local_files_only=True)
    model = AutoModel.from_pretrained(paths[variant], local_files_only=True).eval()
    # SigLIP's documented text padding is to the full 64 positions; CLIP's to the longest.
    padding: dict[str, Any] = (
        {"padding": True} if variant == "clip" else {"padding": "max_length", "max_length": 64}
    )
    # Image processor and tokenizer apart, as the pipeline does: Siglip2Processor's own call
    # would override the image processor's saved patch settings with its class defaults.
    inputs = {
        **processor.image_processor(images=images, return_tensors="pt"),
        **processor.tokenizer(LABELS, return_tensors="pt", **padding),
    }
    with torch.inference_mode():
        outputs = model(**inputs)
    np.testing.assert_allclose(image_vectors, outputs.image_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(text_vectors, outputs.text_embeds.numpy(), atol=1e-5)
    logits = image_vectors @ text_vectors.T * model.logit_scale.exp().item()
    if variant != "clip":
        logits += model.logit_bias.item()
    np.testing.assert_allclose(logits, outputs.logits_per_image.numpy(), atol=1e-4)


@pytest.mark.parametrize("labels", [None, [], ["gloves", ""]])
def test_missing_labels_rejected(
    labels: list[str] | None, adapters: dict[str, ClipModel], images: list[np.ndarray]
) -> None:
    adapter = adapters["clip"]
    assert adapter.zero_shot
    assert isinstance(adapter, Classifier) and isinstance(adapter, Embedder)
    with pytest.raises(InvalidInput):
        adapter.classify(images, labels)


def test_top_k_and_batch_size_options(paths: dict[str, Path], images: list[np.ndarray]) -> None:
    full = loaded(paths["siglip"]).classify(images, LABELS)
    best_two = loaded(paths["siglip"], top_k=2).classify(images, LABELS)
    one_at_a_time = loaded(paths["siglip"], batch_size=1)
    for best, everything in zip(best_two, full, strict=True):
        assert list(best) == list(everything)[:2]
    for single, batched in zip(one_at_a_time.classify(images, LABELS), full, strict=True):
        assert list(single.values()) == pytest.approx(list(batched.values()), abs=1e-5)
    np.testing.assert_allclose(
        one_at_a_time.embed_texts(LABELS), loaded(paths["siglip"]).embed_texts(LABELS), atol=1e-5
    )


@pytest.mark.parametrize(
    "options", [{"template": "no placeholder"}, {"template": "{label}"}, {"top_k": 0}]
)
def test_bad_options_name_the_key(paths: dict[str, Path], options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=f"options.{next(iter(options))}"):
        make(paths["clip"], **options)


def test_edge_inputs(adapters: dict[str, ClipModel]) -> None:
    adapter = adapters["clip"]
    assert adapter.classify([], LABELS) == []
    assert adapter.embed_images([]).shape == (0, PROJECTION_DIM)
    assert adapter.embed_texts([]).shape == (0, PROJECTION_DIM)
    with pytest.raises(InvalidInput):
        adapter.embed_images([np.zeros((8, 8, 4), dtype=np.uint8)])
    # Longer than the text tower's 48 positions: truncated, not a crash in the forward.
    long_label = "a very long description of clothing that goes on well past the positions"
    (scores,) = adapter.classify([skimage.data.chelsea()], [long_label, "gloves"])
    assert set(scores) == {long_label, "gloves"}
    # Duplicate candidates are scored once (a duplicate would halve a softmax).
    (scores,) = adapter.classify([skimage.data.chelsea()], ["gloves", "gloves", "face mask"])
    assert list(scores) == sorted(scores, key=scores.__getitem__, reverse=True)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5) and len(scores) == 2


def test_single_tower_checkpoint_is_refused(tiny_models: TinyModels) -> None:
    with pytest.raises(ModelLoadFailed, match="not an image-text dual encoder"):
        loaded(tiny_models.path("vit_classifier"))
