"""SegFormer adapter against a tiny random checkpoint (18 clothes classes): parity with the
hand-run transformers pipeline, label maps at the input size, class fractions, half precision
(memory, unload and corrupt weights: test_contract.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from transformers import SegformerForSemanticSegmentation, SegformerImageProcessor

from tests.conftest import TinyModels
from tests.families.adapters import load_adapter, make_adapter
from tests.tiny.segformer import CLOTHES_LABELS
from zooserve.core.errors import InvalidInput
from zooserve.families.hf.segformer import SegformerSegmenter


def class_fractions(label_map: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Fraction of pixels per class present in `label_map` (int (H, W)), high to low (a test
    helper: nothing in the package calls it).

    Classes with no pixel are left out; ids beyond `labels` are named `class_<id>`. The
    fractions of one map sum to 1 (an empty map gives `{}`).
    """
    ids = np.asarray(label_map).ravel()
    if ids.size == 0:
        return {}
    if ids.min() < 0:
        raise InvalidInput("label map holds negative class ids")
    counts = np.bincount(ids.astype(np.int64))
    present = np.flatnonzero(counts)
    order = present[np.argsort(-counts[present], kind="stable")]
    return {
        (labels[i] if i < len(labels) else f"class_{i}"): float(counts[i] / ids.size) for i in order
    }


@pytest.fixture(scope="module")
def tiny_path(tiny_models: TinyModels) -> Path:
    return tiny_models.path("segformer")


@pytest.fixture(scope="module")
def segmenter(tiny_path: Path) -> SegformerSegmenter:
    return load_adapter(SegformerSegmenter, tiny_path)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    # Different sizes, one non-square (chelsea is 300x451).
    return [skimage.data.astronaut(), skimage.data.chelsea()]


def _reference(path: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    """The documented transformers pipeline, by hand, with its own model instance."""
    processor = SegformerImageProcessor.from_pretrained(path, local_files_only=True)
    model = SegformerForSemanticSegmentation.from_pretrained(path, local_files_only=True).eval()
    with torch.inference_mode():
        outputs = model(**processor(images=images, return_tensors="pt"))
    maps = processor.post_process_semantic_segmentation(
        outputs, target_sizes=[image.shape[:2] for image in images]
    )
    return [m.numpy() for m in maps]


def test_parity_with_transformers_pipeline(
    segmenter: SegformerSegmenter, tiny_path: Path, images: list[np.ndarray]
) -> None:
    got = segmenter.segment(images)
    expected = _reference(tiny_path, images)
    assert len(got) == len(expected) == len(images)
    for label_map, ref, image in zip(got, expected, images, strict=True):
        assert label_map.dtype == np.int32
        assert label_map.shape == image.shape[:2]
        assert len(np.unique(ref)) > 1, "random model predicts one class; parity is vacuous"
        np.testing.assert_array_equal(label_map, ref)


def test_labels_from_config(segmenter: SegformerSegmenter) -> None:
    assert segmenter.labels == CLOTHES_LABELS


def test_class_fractions_of_a_prediction(
    segmenter: SegformerSegmenter, images: list[np.ndarray]
) -> None:
    (label_map,) = segmenter.segment(images[:1])
    fractions = class_fractions(label_map, segmenter.labels)
    assert set(fractions) <= set(CLOTHES_LABELS)
    assert sum(fractions.values()) == pytest.approx(1.0)
    counts = np.bincount(label_map.ravel(), minlength=len(CLOTHES_LABELS))
    for i, name in enumerate(CLOTHES_LABELS):
        assert fractions.get(name, 0.0) == pytest.approx(counts[i] / label_map.size)
    assert list(fractions.values()) == sorted(fractions.values(), reverse=True)


def test_class_fractions_by_hand() -> None:
    label_map = np.array([[0, 0, 4, 4], [4, 4, 4, 19]], dtype=np.int32)
    assert class_fractions(label_map, CLOTHES_LABELS) == {
        "Upper-clothes": 5 / 8,
        "Background": 2 / 8,
        "class_19": 1 / 8,
    }
    assert class_fractions(np.zeros((0, 0), dtype=np.int32), CLOTHES_LABELS) == {}


def test_empty_batch_and_bad_images(segmenter: SegformerSegmenter) -> None:
    assert segmenter.segment([]) == []
    with pytest.raises(InvalidInput):
        segmenter.segment([np.zeros((10, 10), dtype=np.uint8)])


@pytest.mark.parametrize("shape", [(1, 40, 3), (3, 50, 3), (40, 1, 3), (1, 1, 3)])
def test_tiny_and_thin_images(segmenter: SegformerSegmenter, shape: tuple[int, ...]) -> None:
    # A height of 1 or 3 is not mistaken for a channels-first image.
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    (label_map,) = segmenter.segment([image])
    assert label_map.shape == shape[:2]


def test_half_precision_path(tiny_path: Path, segmenter: SegformerSegmenter) -> None:
    """CUDA runs bf16 weights (no GPU here: the same dtype on the CPU); outputs stay int32."""
    half = make_adapter(SegformerSegmenter, tiny_path)
    half.dtype = torch.bfloat16
    half.load()
    assert half.memory_bytes() < 0.55 * segmenter.memory_bytes()  # int buffers stay int
    image = skimage.data.chelsea()
    (label_map,) = half.segment([image])
    assert label_map.dtype == np.int32 and label_map.shape == image.shape[:2]
    assert (label_map == segmenter.segment([image])[0]).mean() > 0.9
