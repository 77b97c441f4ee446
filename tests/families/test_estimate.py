"""The size a model is admitted by before its first load, when the config gives no `vram_mb`:
its weight files when it has them, else the parameters its config.json describes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2Model

from tests.tiny.checkpoint import seeded
from zooserve.families import adapter_class
from zooserve.families.base import UNKNOWN_SIZE_BYTES, WEIGHT_SUFFIXES
from zooserve.runtimes.torch_runtime import module_bytes

OWL = adapter_class("owlv2")


def tiny_owl_config() -> Owlv2Config:
    """A tiny OWLv2: enough for real heads and int64 position-id buffers, ~100k parameters."""
    small = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2}
    return Owlv2Config(
        text_config={**small, "num_hidden_layers": 1, "vocab_size": 64},
        vision_config={**small, "num_hidden_layers": 1, "image_size": 32, "patch_size": 16},
        projection_dim=16,
    )


@pytest.fixture(scope="module")
def owl_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full checkpoint directory: config.json and safetensors."""
    directory = tmp_path_factory.mktemp("owl")
    seeded(Owlv2ForObjectDetection, tiny_owl_config()).save_pretrained(directory)
    return directory


def config_only(checkpoint: Path, directory: Path, **changes: object) -> Path:
    """A copy of the checkpoint's config.json alone (no weights), with `changes` applied."""
    data = json.loads((checkpoint / "config.json").read_text())
    data.update(changes)
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(json.dumps(data))
    return directory


def loaded_bytes(model_class: type[torch.nn.Module], dtype: torch.dtype) -> int:
    """What the model built from the tiny config holds once its floats are in `dtype`."""
    model = seeded(model_class, tiny_owl_config()).to(dtype)
    return module_bytes([model])


@pytest.mark.parametrize(("device", "dtype"), [("cpu", torch.float32), ("cuda:0", torch.float16)])
def test_a_config_without_weights_is_estimated_by_its_parameters(
    owl_checkpoint: Path, tmp_path: Path, device: str, dtype: torch.dtype
) -> None:
    """Without it a model with no vram_mb and no weight file was admitted as 0 bytes. The
    device is only a name here: CUDA means half precision, nothing runs on a GPU."""
    source = config_only(owl_checkpoint, tmp_path / "m")
    expected = loaded_bytes(Owlv2ForObjectDetection, dtype)
    assert OWL.estimate_bytes(str(source), device) == pytest.approx(expected, rel=0.01)


def test_a_checkpoint_stored_in_half_precision_counts_two_bytes(
    owl_checkpoint: Path, tmp_path: Path
) -> None:
    source = config_only(owl_checkpoint, tmp_path / "m", dtype="bfloat16")
    expected = loaded_bytes(Owlv2ForObjectDetection, torch.bfloat16)
    assert OWL.estimate_bytes(str(source), "cpu") == pytest.approx(expected, rel=0.01)


def test_without_architectures_the_base_model_is_counted(
    owl_checkpoint: Path, tmp_path: Path
) -> None:
    source = config_only(owl_checkpoint, tmp_path / "m", architectures=None)
    expected = loaded_bytes(Owlv2Model, torch.float32)
    assert OWL.estimate_bytes(str(source), "cpu") == pytest.approx(expected, rel=0.01)


def test_weight_files_decide_when_present(owl_checkpoint: Path) -> None:
    weights = sum(p.stat().st_size for p in owl_checkpoint.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    assert weights > 0
    assert OWL.estimate_bytes(str(owl_checkpoint), "cpu") == weights
    assert OWL.estimate_bytes(str(owl_checkpoint), "cuda:0") == weights // 2


@pytest.mark.parametrize(
    "config_json",
    [
        None,  # no config.json at all
        "{not json",
        "[]",
        '{"model_type": "no-such-model"}',
        '{"model_type": "custom", "auto_map": {"AutoConfig": "custom.CustomConfig"}}',
    ],
)
def test_what_cannot_be_read_gives_no_estimate(tmp_path: Path, config_json: str | None) -> None:
    if config_json is not None:
        (tmp_path / "config.json").write_text(config_json)
    assert OWL.estimate_bytes(str(tmp_path), "cpu") is None
    assert OWL.estimate_bytes(str(tmp_path / "absent"), "cpu") is None


def test_a_backbone_named_by_hub_id_is_not_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers asks the hub whether a bare `backbone` name is a repository; an estimate
    must never touch the network, so such a config gets none."""
    import transformers.backbone_utils

    asked: list[str] = []

    def hf_api() -> object:
        asked.append("hub")
        raise AssertionError("the estimate asked the hub")

    monkeypatch.setattr(transformers.backbone_utils, "hf_api", hf_api)
    config = {"model_type": "detr", "backbone": "org/backbone", "use_timm_backbone": False}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert OWL.estimate_bytes(str(tmp_path), "cpu") is None
    assert asked == []


def test_the_unknown_size_is_a_small_models() -> None:
    assert UNKNOWN_SIZE_BYTES == 256 * 2**20
