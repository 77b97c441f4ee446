"""OSNet re-id embedder on ONNX Runtime, against a tiny OSNet-style network exported to ONNX
offline: output contract, parity with the torch module, batch layouts, providers (memory,
unload and corrupt files: test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from tests.families.adapters import make_adapter
from tests.tiny.osnet import EMBED_DIM, TinyOsnet, preprocess
from zooserve.core.errors import InvalidInput, ModelUnavailable
from zooserve.families import adapter_class
from zooserve.families.kinds import Embedder
from zooserve.families.onnx.osnet import OsnetEmbedder


def _embedder(path: Path) -> OsnetEmbedder:
    return make_adapter(OsnetEmbedder, path, framework="onnx", category="embedding")


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    pytest.importorskip("onnx")  # torch.onnx.export needs it
    return tiny_models.path("osnet")


@pytest.fixture(scope="module")
def embedder(tiny_path: Path) -> OsnetEmbedder:
    adapter = _embedder(tiny_path / "osnet_tiny.onnx")
    adapter.load()
    return adapter


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    """Person-like crops of different sizes and aspect ratios from real images."""
    astronaut, coffee = skimage.data.astronaut(), skimage.data.coffee()
    return [astronaut[20:500, 120:330], astronaut[250:512, 0:90], coffee[50:300, 250:350]]


def test_registry_resolves_family() -> None:
    assert adapter_class("osnet") is OsnetEmbedder
    assert OsnetEmbedder.family == "osnet" and issubclass(OsnetEmbedder, Embedder)


def test_reads_input_layout_from_the_model(embedder: OsnetEmbedder) -> None:
    assert embedder.input_size == (256, 128)
    assert embedder.embed_dim == EMBED_DIM and embedder.fixed_batch is None


def test_unit_norm_512_d(embedder: OsnetEmbedder, crops: list[np.ndarray]) -> None:
    vectors = embedder.embed_images(crops)
    assert vectors.shape == (len(crops), 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # A real network of its input: different people differ, the same crop is the same.
    similarity = vectors @ vectors.T
    assert similarity[0, 2] < 0.999 and similarity[0, 1] < 0.999
    np.testing.assert_allclose(embedder.embed_images(crops[:1])[0], vectors[0], atol=1e-6)


def test_parity_with_torch_module(
    embedder: OsnetEmbedder, tiny_path: Path, crops: list[np.ndarray]
) -> None:
    model = TinyOsnet()
    model.load_state_dict(torch.load(tiny_path / "osnet_tiny.pt"))
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(model.eval()(preprocess(crops)), dim=1).numpy()
    np.testing.assert_allclose(embedder.embed_images(crops), expected, atol=1e-4, rtol=0)


def test_empty_batch(embedder: OsnetEmbedder) -> None:
    empty = embedder.embed_images([])
    assert empty.shape == (0, 512) and empty.dtype == np.float32


def test_fixed_batch_export_is_fed_crop_by_crop(
    embedder: OsnetEmbedder, tiny_path: Path, crops: list[np.ndarray]
) -> None:
    fixed = _embedder(tiny_path / "osnet_tiny_batch1.onnx")
    fixed.load()
    assert fixed.fixed_batch == 1
    np.testing.assert_allclose(
        fixed.embed_images(crops), embedder.embed_images(crops), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((0, 5, 3), np.uint8), np.zeros((8, 8, 4))]
)
def test_bad_crop_rejected(embedder: OsnetEmbedder, bad: np.ndarray) -> None:
    with pytest.raises(InvalidInput):
        embedder.embed_images([bad])


def test_texts_are_not_embedded(embedder: OsnetEmbedder) -> None:
    with pytest.raises(InvalidInput):
        embedder.embed_texts(["a person"])


def test_memory_is_the_onnx_file(embedder: OsnetEmbedder) -> None:
    assert embedder.memory_bytes() == Path(embedder.source).stat().st_size > 100_000
    assert embedder.torch_modules() == []


def test_missing_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        _embedder(tmp_path / "osnet_x0_25.onnx").load()
