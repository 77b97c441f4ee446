"""Test scenes for tracking with known ground truth, and MOT scoring with motmetrics.

`Crossing`: three coloured rectangles on known trajectories. Red and blue pass each other
head-on (blue drawn over red, hiding most of it for a few frames); green falls through both.
`Faces`: two copies of the astronaut (one mirrored) sliding apart: real faces for OpenCV's
shipped Haar cascade, so a real detector runs end to end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import motmetrics as mm
import numpy as np
import skimage.data

from tests.videos import encode_video

Box = tuple[float, float, float, float]  # xyxy px


@dataclass(frozen=True)
class Mover:
    object_id: int
    colour: tuple[int, int, int]
    start: tuple[float, float]  # top-left at frame 0, px
    velocity: tuple[float, float]  # px per frame
    size: tuple[int, int]  # width, height px

    def box(self, frame: int) -> Box:
        x = self.start[0] + self.velocity[0] * frame
        y = self.start[1] + self.velocity[1] * frame
        return (x, y, x + self.size[0], y + self.size[1])


class Crossing:
    """160x96 px, 40 frames; draw order green, red, blue (later ones hide earlier ones)."""

    width, height, frames = 160, 96, 40
    movers = (
        Mover(3, (40, 200, 60), (84, -10), (0.0, 2.5), (18, 18)),  # green, falling
        Mover(1, (220, 40, 40), (4, 30), (3.5, 0.0), (24, 22)),  # red, rightwards
        Mover(2, (40, 60, 230), (132, 34), (-3.5, 0.0), (24, 22)),  # blue, leftwards
    )

    def boxes(self, frame: int) -> dict[int, Box]:
        """Amodal ground-truth boxes (clipped to the frame) of the objects in view."""
        out = {}
        for mover in self.movers:
            x1, y1, x2, y2 = mover.box(frame)
            clipped = (max(x1, 0), max(y1, 0), min(x2, self.width), min(y2, self.height))
            if clipped[2] - clipped[0] >= 4 and clipped[3] - clipped[1] >= 4:
                out[mover.object_id] = clipped
        return out

    def masks(self, frame: int) -> dict[int, np.ndarray]:
        """Visible pixels (H, W) bool of each object after occlusion by later ones."""
        owner = np.zeros((self.height, self.width), np.int16)
        for mover in self.movers:
            x1, y1, x2, y2 = (round(v) for v in mover.box(frame))
            owner[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = mover.object_id
        return {i: owner == i for i in self.boxes(frame)}

    def image(self, frame: int) -> np.ndarray:
        """RGB uint8 (H, W, 3): grey background, rectangles in draw order."""
        canvas = np.full((self.height, self.width, 3), 90, np.uint8)
        colours = {m.object_id: m.colour for m in self.movers}
        for object_id, mask in self.masks(frame).items():
            canvas[mask] = colours[object_id]
        return canvas

    def write(self, path: Path) -> Path:
        return encode_video(path, (self.image(i) for i in range(self.frames)))


class Faces:
    """320x128 px, 12 frames: astronaut A moving right 2 px/frame, mirrored B moving left."""

    width, height, frames = 320, 128, 12

    def image(self, frame: int) -> np.ndarray:
        tile = np.ascontiguousarray(skimage.data.astronaut()[::4, ::4])  # 128x128
        canvas = np.zeros((self.height, self.width, 3), np.uint8)
        canvas[:, 2 * frame : 2 * frame + 128] = tile
        left = 192 - 2 * frame
        canvas[:, left : left + 128] = tile[:, ::-1]
        return canvas

    def write(self, path: Path) -> Path:
        return encode_video(path, (self.image(i) for i in range(self.frames)))


def iou_distances(
    truth: Sequence[Box], hypotheses: Sequence[Box], min_iou: float = 0.5
) -> np.ndarray:
    """1 - IoU, NaN (no match allowed) below `min_iou` (motmetrics' own helper needs NumPy 1)."""
    if not truth or not hypotheses:
        return np.empty((len(truth), len(hypotheses)))
    a = np.asarray(truth, float)[:, None, :]
    b = np.asarray(hypotheses, float)[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    iou = inter / (area(a) + area(b) - inter)
    return np.where(iou >= min_iou, 1.0 - iou, np.nan)


def mot_scores(
    truth: Sequence[Mapping[int, Box]], hypotheses: Sequence[Mapping[int, Box]]
) -> dict[str, float]:
    """MOTA, IDF1 and identity switches of per-frame {id: box} hypotheses against truth."""
    accumulator = mm.MOTAccumulator(auto_id=True)
    for gt, hyp in zip(truth, hypotheses, strict=True):
        accumulator.update(
            list(gt), list(hyp), iou_distances(list(gt.values()), list(hyp.values()))
        )
    summary = mm.metrics.create().compute(
        accumulator, metrics=["mota", "idf1", "num_switches"], name="run"
    )
    return {key: float(summary[key].iloc[0]) for key in summary.columns}
