"""The one per-frame result of boxes, masks and tracks (STYLE.md habit 3).

Detectors and trackers hand out `sv.Detections`; the pipelines put each frame's into a
`FrameDetections` and the API's serializers (api/serializers.py) turn it into the response
models (the per-frame response model of detect is the pydantic `FrameResult`). Nothing in
between converts it: one carrier from the family boundary to the API edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv


@dataclass(frozen=True)
class FrameDetections:
    """One frame's detections or tracked objects.

    `detections` holds N rows: xyxy float32 (N, 4) px of the frame; confidence float32 (N,)
    in 0..1; detections carry data["class_name"] (N,) str; tracks carry tracker_id (N,) int
    (the object ids) and data["occluded"] (N,) bool; mask bool (N, H, W) when the model
    segments, with data["has_mask"] (N,) bool where a tracker had no mask for some rows.
    """

    frame_number: int
    timestamp: float  # seconds
    detections: sv.Detections


def tracked_objects(
    object_ids: Sequence[int] | np.ndarray,
    boxes: Sequence[Sequence[float] | np.ndarray] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    occluded: Sequence[bool] | np.ndarray,
    masks: Sequence[np.ndarray | None] | None = None,
) -> sv.Detections:
    """A tracker's objects of one frame as `sv.Detections` (see `FrameDetections`).

    `masks`: per object a bool (H, W) mask or None (no mask for that object, e.g. a box-only
    detection coasting); all None, or no list, gives a box-only result.
    """
    count = len(object_ids)
    given = [m for m in masks or [] if m is not None]
    mask = None
    data: dict[str, Any] = {"occluded": np.asarray(occluded, dtype=bool).reshape(count)}
    if given and masks is not None:
        blank = np.zeros(given[0].shape, dtype=bool)
        mask = np.stack([blank if m is None else np.asarray(m, dtype=bool) for m in masks])
        data["has_mask"] = np.array([m is not None for m in masks], dtype=bool)
    return sv.Detections(
        xyxy=np.asarray(boxes, dtype=np.float32).reshape(count, 4),
        confidence=np.asarray(scores, dtype=np.float32).reshape(count),
        tracker_id=np.asarray(object_ids, dtype=int).reshape(count),
        mask=mask,
        data=data,
    )


def row_mask(detections: sv.Detections, row: int) -> np.ndarray | None:
    """Row `row`'s bool (H, W) mask, or None when the tracker had none for it."""
    if detections.mask is None:
        return None
    has_mask = detections.data.get("has_mask")
    if has_mask is not None and not has_mask[row]:
        return None
    return np.asarray(detections.mask[row], dtype=bool)
