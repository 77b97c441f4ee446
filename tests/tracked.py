"""Row views of a tracker's `sv.Detections` (families/results.py), for assertions that read one
object at a time (`o.object_id`, `o.box`, `o.mask`, `o.score`, `o.occluded`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import supervision as sv

from zooserve.families.base import Image
from zooserve.families.kinds import Tracker
from zooserve.families.results import FrameDetections, row_mask
from zooserve.media.rle import encode_mask


@dataclass(frozen=True)
class TrackedRow:
    object_id: int
    box: tuple[float, float, float, float]  # xyxy px
    score: float
    mask: Any  # bool (H, W), or its COCO RLE (`rle=True`), or None
    occluded: bool


@dataclass(frozen=True)
class TrackedFrameView:
    frame_number: int
    timestamp: float
    objects: list[TrackedRow]


def tracked_rows(detections: sv.Detections, *, rle: bool = False) -> list[TrackedRow]:
    """One view per row; masks as bool arrays, or as COCO RLE like the API sends them."""
    assert detections.tracker_id is not None and detections.confidence is not None
    rows = []
    for row in range(len(detections)):
        mask = row_mask(detections, row)
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[row])
        rows.append(
            TrackedRow(
                object_id=int(detections.tracker_id[row]),
                box=(x1, y1, x2, y2),
                score=float(detections.confidence[row]),
                mask=encode_mask(mask) if rle and mask is not None else mask,
                occluded=bool(detections.data["occluded"][row]),
            )
        )
    return rows


def frame_view(frame: FrameDetections) -> TrackedFrameView:
    """A tracked frame with its objects as rows, masks as COCO RLE."""
    return TrackedFrameView(
        frame.frame_number, frame.timestamp, tracked_rows(frame.detections, rle=True)
    )


def step_rows(tracker: Tracker, session: Any, frame_number: int, image: Image) -> list[TrackedRow]:
    """`tracker.step`, its objects as row views (masks as bool arrays)."""
    return tracked_rows(tracker.step(session, frame_number, image))
