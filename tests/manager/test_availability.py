"""A model is available only when it can be served (issue #19): its files are here *and* an
adapter serves its family, configured or read from its checkpoint's config.json. Checkpoint
folders are written by hand (a config.json and a weights file): nothing loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zooserve.catalog import Config
from zooserve.manager import ModelManager


def checkpoint(root: Path, name: str, model_type: str) -> str:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    (folder / "model.safetensors").write_bytes(b"\x00" * 16)
    return str(folder)


@pytest.fixture
def manager(tmp_path: Path) -> ModelManager:
    models = {
        # files here, the family configured and registered
        "rfdetr": {"model_id": checkpoint(tmp_path, "rfdetr", "rf_detr"), "family": "rf_detr"},
        # files here, families read from config.json
        "sam3-video": {"model_id": checkpoint(tmp_path, "sam3v", "sam3_video")},
        "edgetam": {"model_id": checkpoint(tmp_path, "edgetam", "edgetam_video")},
        # files here, but no adapter: a configured family this version lacks, and a
        # checkpoint whose model_type no family reads
        "paddle": {"model_id": checkpoint(tmp_path, "paddle", "bert"), "family": "paddleocr"},
        "unknown": {"model_id": checkpoint(tmp_path, "unknown", "bert")},
        # no files
        "absent": {"model_id": str(tmp_path / "nowhere"), "family": "rf_detr"},
    }
    return ModelManager(Config.model_validate({"device": "cpu", "models": models}))


CASES = {
    "rfdetr": True,
    "sam3-video": True,
    "edgetam": True,
    "paddle": False,
    "unknown": False,
    "absent": False,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_available_means_servable(manager: ModelManager, name: str) -> None:
    assert manager.available(name) is CASES[name]
    assert manager.model_info(name)["available"] is CASES[name]  # what /models/info says


def test_families_come_from_the_new_checkpoints(manager: ModelManager) -> None:
    assert manager.model_info("sam3-video")["family"] == "sam3_tracker"
    assert manager.model_info("edgetam")["family"] == "edgetam"


def test_a_custom_adapter_factory_serves_families_the_registry_lacks(tmp_path: Path) -> None:
    """Stand-in families (the scheduler tests' `sized`) are served by their own factory."""
    spec = {"model_id": checkpoint(tmp_path, "x", "bert"), "family": "paddleocr"}
    config = Config.model_validate({"device": "cpu", "models": {"x": spec}})
    manager = ModelManager(config, adapter_factory=lambda spec, source, device: None)  # type: ignore[arg-type, return-value]
    assert manager.available("x")
