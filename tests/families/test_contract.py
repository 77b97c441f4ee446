"""The adapter contract, the same for every family with tiny weights built here: registry,
memory accounting, warm-up, unload really drops the weights, corrupt weights raise."""

from __future__ import annotations

import gc
import shutil
import weakref
from pathlib import Path

import pytest
import skimage.data

from tests.conftest import TinyModels
from zooserve.catalog import ModelSpec
from zooserve.families import adapter_class
from zooserve.families.base import Detector

FAMILIES = ["owlv2", "grounding_dino", "florence2"]


def make(family: str, path: Path) -> Detector:
    spec = ModelSpec(name=f"{family}-tiny", model_id=str(path), family=family)
    adapter = adapter_class(family)(spec, str(path), "cpu")
    assert isinstance(adapter, Detector) and adapter.family == family
    return adapter


@pytest.mark.parametrize("family", FAMILIES)
def test_load_measure_warm_up_and_unload(family: str, tiny_models: TinyModels) -> None:
    adapter = make(family, tiny_models.path(family))
    adapter.load()
    adapter.warmup()
    (module,) = adapter.torch_modules()
    tensors = [*module.parameters(), *module.buffers()]
    assert adapter.memory_bytes() == sum(t.numel() * t.element_size() for t in tensors) > 0
    adapter.detect([skimage.data.chelsea()], ["a cat"], 0.0)
    ref = weakref.ref(module)
    del module, tensors
    adapter.unload()
    gc.collect()
    assert ref() is None, "the model is still referenced after unload"
    assert adapter.memory_bytes() == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_corrupt_weights_raise(family: str, tiny_models: TinyModels, tmp_path: Path) -> None:
    broken = tmp_path / f"{family}-broken"
    shutil.copytree(tiny_models.path(family), broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 64)
    with pytest.raises(Exception):  # noqa: B017 - any loader error, as long as it is not silent
        make(family, broken).load()
