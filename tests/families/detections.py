"""Checks on the detector result type (`supervision.Detections`, see families/base.py), shared by
the detector family tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import supervision as sv


def check_detections(det: sv.Detections, image: np.ndarray, labels: Sequence[str]) -> None:
    """One image's result: some boxes, xyxy float32 (N, 4) in the image's pixels with x2 >= x1
    and y2 >= y1, confidence (N,) in (0, 1], class ids, and class names among `labels`."""
    height, width = image.shape[:2]
    assert len(det) > 0
    assert det.xyxy.dtype == np.float32 and det.xyxy.shape == (len(det), 4)
    assert (det.xyxy[:, [0, 2]] >= 0).all() and (det.xyxy[:, [0, 2]] <= width).all()
    assert (det.xyxy[:, [1, 3]] >= 0).all() and (det.xyxy[:, [1, 3]] <= height).all()
    assert (det.xyxy[:, 2] >= det.xyxy[:, 0]).all() and (det.xyxy[:, 3] >= det.xyxy[:, 1]).all()
    assert det.confidence is not None and det.confidence.shape == (len(det),)
    assert ((det.confidence > 0) & (det.confidence <= 1)).all()
    assert det.class_id is not None and (det.class_id >= 0).all()
    assert set(det.data["class_name"]) <= set(labels)


def assert_matches_reference(
    got: Sequence[sv.Detections],
    expected: Sequence[Mapping[str, Any]],
    prompts: Sequence[str],
    *,
    box_atol: float,
    score_atol: float,
    score_rtol: float = 0.0,
) -> None:
    """The adapter's results equal a reference pipeline's, image by image: `boxes` (N, 4) px,
    `scores` (N,) and `labels` (N,) indices into `prompts`. Vacuous parity (no box at all) fails."""
    assert len(got) == len(expected)
    assert sum(len(d) for d in got) > 0, "random model produced no boxes; lower the threshold"
    for det, ref in zip(got, expected, strict=True):
        labels = np.asarray(ref["labels"]).astype(int).tolist()
        assert len(det) == len(labels)
        assert det.confidence is not None and det.class_id is not None
        np.testing.assert_allclose(det.xyxy, np.asarray(ref["boxes"]), atol=box_atol, rtol=0)
        np.testing.assert_allclose(
            det.confidence, np.asarray(ref["scores"]), atol=score_atol, rtol=score_rtol
        )
        assert list(det.data["class_name"]) == [prompts[i] for i in labels]
        assert list(det.class_id) == labels
