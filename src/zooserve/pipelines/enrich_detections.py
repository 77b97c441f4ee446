"""The detections of one enrichment run as `sv.Detections`: per frame, one layer per source.

The primary layer of a frame holds the caller's or the detector's detections; each detector
trigger adds a layer of what it found there, whose rows point back to the row of their source's
layer they were found in (the trigger's `source`: the primary layer or another detector
trigger's). Columns of every layer, N rows:

| column | shape | what |
|---|---|---|
| xyxy | (N, 4) float64 | px of the frame (a crop's finds are moved into the frame, then fitted) |
| confidence | (N,) float32 | 0..1 |
| data["class_name"] | (N,) str | the label (a detector trigger without labels: its name) |
| data["source"] | (N,) str | "primary", or the trigger that found the row |
| data["parent"] | (N,) int | row of the source's layer in the same frame; -1: found on the frame |
| data["enrichments"] | (N,) object | per row a dict, output name -> value |

A detector trigger's value on a row is the slice of its layer found in that row's crop (an
`sv.Detections`, possibly empty); the slice shares the rows' enrichment dicts, so what later
stages attach to the children shows through it. The API nests them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import supervision as sv

from zooserve.catalog.zoo import PRIMARY
from zooserve.core.errors import InvalidInput
from zooserve.families.base import Image
from zooserve.pipelines.enrich_results import FrameEnrichment

ENRICHMENTS = "enrichments"
PARENT = "parent"
SOURCE = "source"
#: One xyxy box, px: a row of `xyxy` or four numbers.
XYXY = Sequence[float] | np.ndarray
#: A row's parent when it was found on the whole frame (a frame-scope detector trigger).
NO_PARENT = -1


class RowRef(NamedTuple):
    """Where one detection lives: frame index in the run, layer (source), row in that layer."""

    frame: int
    layer: str
    row: int


def crop(image: Image, box: XYXY, padding: float) -> tuple[Image, tuple[int, int]]:
    """The box widened by `padding` x its size on each side, clipped; and its top-left corner."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left = min(width - 1, max(0, math.floor(x1 - pad_x)))
    top = min(height - 1, max(0, math.floor(y1 - pad_y)))
    right = max(left + 1, min(width, math.ceil(x2 + pad_x)))
    bottom = max(top + 1, min(height, math.ceil(y2 + pad_y)))
    return np.ascontiguousarray(image[top:bottom, left:right]), (left, top)


def fit(box: XYXY, width: int, height: int) -> tuple[float, float, float, float]:
    """The box clipped to the frame, at least one pixel wide and high (detectors may return
    boxes of zero width at the frame's edge)."""
    x1 = min(max(0.0, float(box[0])), width - 1.0)
    y1 = min(max(0.0, float(box[1])), height - 1.0)
    x2 = max(x1 + 1.0, min(float(box[2]), float(width)))
    return (x1, y1, x2, max(y1 + 1.0, min(float(box[3]), float(height))))


def enrichable(
    xyxy: Sequence[Sequence[float]] | np.ndarray,
    confidence: Sequence[float] | np.ndarray,
    labels: Sequence[str],
    source: str,
    parents: Sequence[int] | np.ndarray,
) -> sv.Detections:
    """Detections with the columns above, each row's enrichments an empty dict."""
    count = len(labels)
    enrichments = np.empty(count, dtype=object)
    for row in range(count):
        enrichments[row] = {}
    return sv.Detections(
        xyxy=np.asarray(xyxy, dtype=np.float64).reshape(count, 4),
        confidence=np.asarray(confidence, dtype=np.float32).reshape(count),
        data={
            "class_name": np.array([str(label) for label in labels], dtype=str),
            SOURCE: np.array([source] * count, dtype=str),
            PARENT: np.asarray(parents, dtype=int).reshape(count),
            ENRICHMENTS: enrichments,
        },
    )


def _columns(found: sv.Detections, default_label: str) -> tuple[list[str], np.ndarray]:
    labels = found.data.get("class_name", [default_label] * len(found))
    scores = found.confidence if found.confidence is not None else np.ones(len(found))
    return [str(label) for label in labels], np.asarray(scores, dtype=np.float32)


class DetectionLayers:
    """Every layer of a run, per source and frame; see the module docstring."""

    def __init__(self, frames: Sequence[FrameEnrichment], sources: Mapping[str, str]) -> None:
        """`frames`: the run's frames (their number and size); `sources`: trigger -> source."""
        self.frames = frames
        self.sources = dict(sources)
        self.layers: dict[str, dict[int, sv.Detections]] = {PRIMARY: {}}

    def add_primary(self, frame: int, found: sv.Detections, check_boxes: bool) -> sv.Detections:
        """The frame's primary layer from given detections (`data["class_name"]`), boxes
        fitted to the frame. `check_boxes`: they are the caller's, so an empty box or one
        outside its frame is a 422 (a detector's boxes are only fitted)."""
        number, width, height = (self.frames[frame].frame_number, *self._size(frame))
        labels, scores = _columns(found, "")
        boxes = []
        for row, box in enumerate(np.asarray(found.xyxy, dtype=float).reshape(-1, 4)):
            x1, y1, x2, y2 = (float(v) for v in box)
            inside = x1 < width and y1 < height and x2 > 0 and y2 > 0
            if check_boxes and not (x2 > x1 and y2 > y1 and inside):
                raise InvalidInput(
                    f"detection {row} of frame {number}: box {[x1, y1, x2, y2]} is "
                    f"empty or outside the {width}x{height} frame",
                    {"frame_number": number, "index": row},
                )
            boxes.append(fit(box, width, height))
        primary = enrichable(boxes, scores, labels, PRIMARY, np.full(len(labels), NO_PARENT))
        self.layers[PRIMARY][frame] = primary
        return primary

    def add_found(
        self,
        trigger: str,
        frame: int,
        found: sv.Detections,
        offset: tuple[int, int],
        parent: int = NO_PARENT,
    ) -> sv.Detections:
        """What a detector trigger found in a crop whose top-left corner is `offset` (in the
        row `parent` of its source's layer) appended to its layer; returns those rows."""
        width, height = self._size(frame)
        labels, scores = _columns(found, trigger)
        shift = np.array([offset[0], offset[1], offset[0], offset[1]], dtype=float)
        boxes = [fit(box + shift, width, height) for box in np.asarray(found.xyxy, dtype=float)]
        rows = enrichable(boxes, scores, labels, trigger, np.full(len(labels), parent))
        layer = self.layers.setdefault(trigger, {})
        before = layer.get(frame)
        layer[frame] = rows if before is None else sv.Detections.merge([before, rows])
        return rows

    def _size(self, frame: int) -> tuple[int, int]:
        return self.frames[frame].width, self.frames[frame].height

    def refs(self, layer: str) -> list[RowRef]:
        """Every row of a layer, frame by frame."""
        frames = self.layers.get(layer, {})
        return [RowRef(f, layer, row) for f in sorted(frames) for row in range(len(frames[f]))]

    def frame_layer(self, ref: RowRef) -> sv.Detections:
        return self.layers[ref.layer][ref.frame]

    def label(self, ref: RowRef) -> str:
        return str(self.frame_layer(ref).data["class_name"][ref.row])

    def confidence(self, ref: RowRef) -> float:
        confidence = self.frame_layer(ref).confidence
        return 1.0 if confidence is None else float(confidence[ref.row])

    def box(self, ref: RowRef) -> np.ndarray:
        """xyxy (4,) px of the frame."""
        return np.asarray(self.frame_layer(ref).xyxy[ref.row])

    def enrichments(self, ref: RowRef) -> dict[str, Any]:
        found: dict[str, Any] = self.frame_layer(ref).data[ENRICHMENTS][ref.row]
        return found

    def root(self, ref: RowRef) -> RowRef:
        """The row a chain started from: a primary detection, or a row found on the frame."""
        while ref.layer != PRIMARY:
            parent = int(self.frame_layer(ref).data[PARENT][ref.row])
            if parent == NO_PARENT:
                return ref
            ref = RowRef(ref.frame, self.sources[ref.layer], parent)
        return ref
