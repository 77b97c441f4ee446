"""The values enrichment stages leave (pipelines/enrich_values.py): batch aggregates, segment
fractions, OCR line boxes moved into frame pixels. Pure functions over small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from zooserve.pipelines import enrich_values as values


def test_batch_aggregates_and_segment_fractions() -> None:
    sunny = {"label": "sunny", "score": 0.6, "scores": {"sunny": 0.6, "rainy": 0.4}}
    rainy = {"label": "rainy", "score": 0.9, "scores": {"rainy": 0.9, "sunny": 0.1}}
    weather = values.aggregate([sunny, sunny, rainy])
    assert weather["label"] == "rainy" and weather["frames"] == 3  # mean 0.567 vs 0.433
    assert weather["scores"]["sunny"] == pytest.approx(1.3 / 3)
    quality = values.aggregate(
        [{"score": 80.0, "flags": {"blur": False}}, {"score": 40.0, "flags": {"blur": True}}]
    )
    assert quality == {
        "score": 60.0,
        "min_score": 40.0,
        "flagged_fraction": {"blur": 0.5},
        "frames": 2,
    }
    label_map = np.zeros((10, 10), np.int32)
    label_map[:, :3] = 2
    label_map[0, 9] = 1  # 1 % of the pixels
    parts = values.segment_fractions(label_map, ["Background", "Hat", "Upper-clothes"])
    assert parts == {
        "dominant": "Upper-clothes",
        "fractions": {"Background": 0.69, "Upper-clothes": 0.3, "Hat": 0.01},
    }


def test_in_frame_moves_line_boxes_and_leaves_other_values() -> None:
    value = {
        "text": "AB",
        "score": 0.9,
        "lines": [{"text": "AB", "score": 0.9, "box": [1, 2, 3, 4]}],
    }
    moved = values.in_frame(value, (10, 20))
    assert moved["lines"][0]["box"] == [11, 22, 13, 24]
    assert value["lines"][0]["box"] == [1, 2, 3, 4]  # not changed in place
    assert values.in_frame({"label": "x"}, (10, 20)) == {"label": "x"}
