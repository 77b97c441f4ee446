"""`zooserve models list` / `models info` say a model is available by the rule /models/info
uses (issue #19): its files are here *and* an adapter serves its family, and a detection
tracker only when its detector is. Through the real CLI (typer's runner) on a config file
whose checkpoint folders are written by hand: nothing loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.manager.test_availability import checkpoint
from zooserve.catalog import load_config
from zooserve.cli import app
from zooserve.manager import ModelManager

runner = CliRunner()
#: Model -> available: files and an adapter, files without one, no files, trackers over each.
CASES = {
    "rfdetr": True,
    "sam3-video": True,  # the family read from config.json
    "paddle": False,  # a configured family this version lacks
    "unknown": False,  # a checkpoint whose model_type no family reads
    "absent": False,  # no files
    "rfdetr-track": True,
    "paddle-track": False,  # ByteTrack is built in; its detector cannot be served
}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    def tracker(detector: str) -> dict[str, object]:
        options = {"detector": detector}
        return {"model_id": "builtin:bytetrack", "family": "detection_tracker", "options": options}

    models = {
        "rfdetr": {"model_id": checkpoint(tmp_path, "rfdetr", "rf_detr"), "family": "rf_detr"},
        "sam3-video": {"model_id": checkpoint(tmp_path, "sam3v", "sam3_video")},
        "paddle": {"model_id": checkpoint(tmp_path, "paddle", "bert"), "family": "paddleocr"},
        "unknown": {"model_id": checkpoint(tmp_path, "unknown", "bert")},
        "absent": {"model_id": str(tmp_path / "nowhere"), "family": "rf_detr"},
        "rfdetr-track": tracker("rfdetr"),
        "paddle-track": tracker("paddle"),
    }
    path = tmp_path / "models.yaml"
    path.write_text(json.dumps({"device": "cpu", "models": models}))  # JSON is YAML
    return path


def test_models_list_and_info_agree_with_models_info_route(config_file: Path) -> None:
    listed = runner.invoke(app, ["models", "list", "--config", str(config_file), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    manager = ModelManager(load_config(config_file))  # what /models/info reports
    for name, expected in CASES.items():
        info = runner.invoke(app, ["models", "info", name, "--config", str(config_file)])
        assert info.exit_code == 0, info.output
        record = json.loads(info.stdout)
        assert rows[name]["available"] is expected, (name, rows[name])
        assert record["available"] is expected, (name, record)
        assert manager.model_info(name)["available"] is expected, name
    # files here but not servable: nothing to pull, so no fetch command either
    assert rows["paddle"]["fetch_with"] is None and rows["absent"]["fetch_with"]


def test_the_table_marks_a_model_without_an_adapter_as_not_here(config_file: Path) -> None:
    result = runner.invoke(
        app, ["models", "list", "--config", str(config_file)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    marks = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in _rows(result)}
    assert marks["rfdetr"] == "yes" and marks["paddle"] == "no" and marks["unknown"] == "no"


def _rows(result: object) -> list[str]:
    lines = getattr(result, "stdout", "").splitlines()
    return [line for line in lines if line.startswith("│") and line.count("│") > 2]
