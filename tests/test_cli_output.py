"""Issue 22.2: answers you can see. Each through the real CLI (typer's runner): enrich shows
each stage's value, `ocr --annotate` writes the boxed picture, `models info` shows the
configured source."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from typer.testing import CliRunner

from tests.test_cli import SHIPPED, config_with_text_trigger, sign_png
from zooserve.cli import app

runner = CliRunner()


def test_enrich_table_shows_the_text_read_and_the_quality_score(tmp_path: Path) -> None:
    sign, config = sign_png(tmp_path), config_with_text_trigger(tmp_path)
    args = ["enrich", str(sign), "--frames", "0", "--triggers", "text,quality", "-c", str(config)]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert '"MAIN STREET EXIT 42"' in result.stdout  # the text read, not only "text"
    assert re.search(r"quality: \d+\.\d", result.stdout), result.stdout  # and its score


def test_values_of_nested_detections_are_described() -> None:
    """Faces and plates are detections found inside a detection, with values of their own."""
    from zooserve.cli.render import describe

    box = {"x1": 0, "y1": 0, "x2": 10, "y2": 10}
    plate = {
        "label": "plate",
        "confidence": 0.91,
        "bbox": box,
        "enrichments": {"ocr": {"text": "ABC 1234", "score": 0.95, "lines": []}},
    }
    face = {
        "label": "face",
        "confidence": 0.98,
        "bbox": box,
        "enrichments": {"age": {"label": "20-29", "score": 0.41, "scores": {}}},
    }
    assert describe([plate]) == 'plate 0.91 (ocr "ABC 1234" 0.95)'
    assert describe([face, face]) == "face 0.98 (age 20-29 0.41); face 0.98 (age 20-29 0.41)"
    assert describe({"score": 42.31, "flags": {"blurry": True, "dark": False}}) == (
        "42.3 flags: blurry"
    )
    assert describe({"text": "", "score": 0.0, "lines": []}) == "no text"
    assert describe([]) == "none" and describe(None) == "-"


def test_ocr_annotate_writes_the_lines_boxed_on_the_frame(tmp_path: Path) -> None:
    sign, config = sign_png(tmp_path), config_with_text_trigger(tmp_path)
    out = tmp_path / "sign-text.png"
    args = ["ocr", str(sign), "--json", "--annotate", str(out), "--config", str(config)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (frame,) = json.loads(result.stdout)["frames"]
    drawn = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    plain = np.asarray(Image.open(sign).convert("RGB"), dtype=np.int16)
    changed = np.argwhere(np.abs(drawn - plain).sum(axis=2) > 60)
    assert len(changed) > 100
    # What was drawn is around the lines read (boxes and their captions), nowhere else.
    boxes = np.asarray([line["box"] for line in frame["lines"]])
    x1, y1 = boxes[:, :2].min(axis=0)
    x2, y2 = boxes[:, 2:].max(axis=0)
    top, left = changed.min(axis=0)
    bottom, right = changed.max(axis=0)
    assert x1 - 5 <= left and right <= x2 + 5
    assert y1 - 40 <= top and bottom <= y2 + 5  # captions sit above their box


def test_models_info_shows_the_configured_source_and_where_it_is(tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "info", "owlv2-base", "--config", str(SHIPPED)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    configured = yaml.safe_load(SHIPPED.read_text())["models"]["owlv2-base"]["source"]
    assert record["source"] == configured
    assert record["local_path"] is None and record["available"] is False
    assert record["fetch_with"] == "zooserve models pull owlv2-base"
    builtin = runner.invoke(app, ["models", "info", "opencv-face", "--config", str(SHIPPED)])
    record = json.loads(builtin.stdout)
    assert record["source"] is None and record["available"] is True and record["local_path"]
