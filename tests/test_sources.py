"""Where a configured model's weights are on this machine and which family reads them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import yaml

from tests.test_catalog import MINIMAL, SHIPPED, write
from zooserve import catalog
from zooserve.catalog import load_config
from zooserve.families import sources


def test_the_catalog_imports_no_family() -> None:
    """The families import the catalog, so the catalog must not import them back (a cycle),
    not even inside a function."""
    script = "import sys, zooserve.catalog; print('zooserve.families' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
    tree = ast.parse(Path(catalog.__file__).read_text())
    imported = [
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [name for name in imported if name.startswith("zooserve.families")]


def test_shipped_opencv_detectors_are_found_offline() -> None:
    """They ship inside opencv-python-headless, so they are available with no download."""
    config = load_config(SHIPPED)
    for name in ("opencv-hog-people", "opencv-face", "opencv-plate"):
        assert sources.locate(config, config.models[name]) is not None, name


def test_a_local_model_is_found_once_its_file_exists(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["model_zoo_path"] = "zoo"
    data["models"]["local"] = {"model_id": "{MODEL_ZOO_PATH}/thing.pt", "framework": "ultralytics"}
    config = load_config(write(tmp_path, data))
    spec = config.models["local"]
    assert sources.locate(config, spec) is None
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "thing.pt").write_bytes(b"x")
    assert sources.locate(config, spec) == str(tmp_path / "zoo" / "thing.pt")


def test_hub_model_absent_offline_is_unavailable_without_download(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["models"]["owl"] = {"model_id": "google/owlv2-base-patch16-ensemble"}
    config = load_config(write(tmp_path, data))
    assert sources.locate(config, config.models["owl"]) is None
    assert sources.pull_command(config.models["owl"]) == "zooserve models pull owl"


def test_a_builtin_id_of_an_unknown_family_is_absent(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["models"]["ghost"] = {"model_id": "ghost:thing", "family": "no_such_family"}
    config = load_config(write(tmp_path, data))
    assert sources.locate(config, config.models["ghost"]) is None


def test_family_inferred_from_checkpoint_config(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "grounding-dino"}')
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["models"]["gd"] = {"model_id": str(model_dir)}
    config = load_config(write(tmp_path, data))
    spec = config.models["gd"]
    assert sources.infer_family(config, spec, sources.locate(config, spec)) == "grounding_dino"
    assert sources.infer_family(config, spec, None) is None
    (model_dir / "config.json").write_text('{"model_type": "unheard-of"}')
    assert sources.infer_family(config, spec, str(model_dir)) is None
