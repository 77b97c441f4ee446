"""The JSON-ready value an enrichment stage leaves, from each kind's result type (pure
functions; enrich_kinds.py runs the models):

| kind | value per input |
|---|---|
| detector | `sv.Detections` (enrich_detections.py: the API nests them as detections) |
| classifier | `{label, score, scores}` (top_k best, high to low) |
| embedder | `{dim, vector?}` (the L2-normalised vector only when embeddings are asked for) |
| segmenter | `{dominant, fractions}`: share of the input's pixels per class |
| ocr | `{text, score, lines, coordinates}`: line boxes in frame pixels (`in_frame`) |
| quality | `{score, flags, details}` |
| depth | per detection `{relative_distance}`, per frame `{min, median, max}` (0 = nearest) |
| pose | `{keypoints, posture}`: 17 COCO keypoints (x px, y px, score) |

Batch-scope stages reduce their per-frame values to one with `aggregate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from zooserve.families.kinds import OcrLine, Quality
from zooserve.pipelines.posture import posture

#: How every OCR value labels its line boxes: xyxy pixels of the frame, whatever was read.
OCR_COORDINATES = "frame_pixels"


def classification(scores: dict[str, float], top_k: int) -> dict[str, Any]:
    """{label, score, scores}: the best label and the top_k scores, high to low."""
    ordered = sorted(scores.items(), key=lambda item: -item[1])[:top_k]
    if not ordered:
        return {"label": None, "score": 0.0, "scores": {}}
    return {
        "label": ordered[0][0],
        "score": float(ordered[0][1]),
        "scores": {k: float(v) for k, v in ordered},
    }


def embedding(vector: np.ndarray, include: bool) -> dict[str, Any]:
    """{dim, vector?}: the vector itself only when the caller asked for embeddings."""
    return {"dim": int(vector.shape[0]), **({"vector": vector.tolist()} if include else {})}


def segment_fractions(label_map: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Share of pixels per class present (>= 0.5 %), and the largest non-background class."""
    ids = np.asarray(label_map).ravel().astype(np.int64)
    counts = np.bincount(ids[ids >= 0], minlength=len(labels)) if ids.size else np.zeros(0)
    total = max(1, ids.size)
    fractions = {
        (labels[i] if i < len(labels) else f"class_{i}"): round(float(counts[i]) / total, 4)
        for i in np.argsort(-counts, kind="stable")
        if counts[i] / total >= 0.005
    }
    dominant = next((k for k in fractions if "background" not in k.lower()), None)
    return {"dominant": dominant, "fractions": fractions}


def text_read(lines: Sequence[OcrLine]) -> dict[str, Any]:
    """{text, score, lines}: what an OCR model read in one input, boxes in its pixels."""
    scores = [line.score for line in lines]
    return {
        "text": " ".join(line.text for line in lines).strip(),
        "score": float(np.mean(scores)) if scores else 0.0,
        "lines": [
            {
                "text": line.text,
                "score": float(line.score),
                "box": None if line.box is None else [float(v) for v in line.box],
            }
            for line in lines
        ],
    }


def in_frame(value: Any, offset: tuple[int, int]) -> Any:
    """An OCR value read from a crop whose top-left corner is `offset` in the frame, with its
    line boxes moved into frame pixels and labelled so (other values pass through)."""
    if not (isinstance(value, dict) and "lines" in value):
        return value
    dx, dy = offset
    lines = [
        {
            **line,
            "box": None
            if line.get("box") is None
            else [
                round(float(v) + (dx if i % 2 == 0 else dy), 2) for i, v in enumerate(line["box"])
            ],
        }
        for line in value["lines"]
    ]
    return {**value, "lines": lines, "coordinates": OCR_COORDINATES}


def quality(result: Quality) -> dict[str, Any]:
    """{score, flags, details} of one image's quality."""
    return {
        "score": float(result.score),
        "flags": {k: bool(v) for k, v in result.flags.items()},
        "details": {k: float(v) for k, v in result.details.items()},
    }


def pose(keypoints: np.ndarray) -> dict[str, Any]:
    """One person's keypoints (17, 3), rounded to 0.01, and the posture they show."""
    points = np.asarray(keypoints, dtype=np.float32)
    return {"keypoints": points.round(2).tolist(), "posture": posture(points)}


def depth_at_box(depth_map: np.ndarray, box: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Relative distance of one detection: the median of the depth map over its box."""
    # imported here: the family module imports torch, which only a depth stage needs
    from zooserve.families.hf.depth_anything import relative_distance

    distance = relative_distance(depth_map, [float(v) for v in box])
    return {"relative_distance": round(float(distance), 4)}


def depth_summary(depth_map: np.ndarray) -> dict[str, float]:
    """A whole frame's depth: nearest, median and farthest values."""
    values = np.asarray(depth_map, dtype=np.float32)
    return {
        "min": round(float(values.min()), 4),
        "median": round(float(np.median(values)), 4),
        "max": round(float(values.max()), 4),
    }


def aggregate(values: Sequence[Any]) -> dict[str, Any]:
    """One value for a batch from per-frame values: mean class scores, or mean quality."""
    dicts = [v for v in values if isinstance(v, dict)]
    if dicts and all("scores" in v for v in dicts):
        totals: dict[str, float] = {}
        for value in dicts:
            for label, score in value["scores"].items():
                totals[label] = totals.get(label, 0.0) + score / len(dicts)
        return {**classification(totals, len(totals)), "frames": len(dicts)}
    if dicts and all("flags" in v for v in dicts):
        flags = sorted({k for v in dicts for k in v["flags"]})
        return {
            "score": float(np.mean([v["score"] for v in dicts])),
            "min_score": float(min(v["score"] for v in dicts)),
            "flagged_fraction": {
                k: sum(bool(v["flags"].get(k)) for v in dicts) / len(dicts) for k in flags
            },
            "frames": len(dicts),
        }
    return {"frames": len(values)}
