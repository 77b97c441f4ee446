"""Draw detections on frames (supervision annotators) for people to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import supervision as sv


def annotate(image: np.ndarray, detections: sv.Detections) -> np.ndarray:
    """RGB image + detections -> RGB image with boxes and `label score` captions."""
    names = detections.data.get("class_name", [""] * len(detections))
    scores = detections.confidence if detections.confidence is not None else [1.0] * len(detections)
    labels = [f"{n} {s:.2f}" for n, s in zip(names, scores, strict=True)]
    scene: np.ndarray = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    scene = sv.BoxAnnotator(thickness=2).annotate(scene.copy(), detections)
    labeller = sv.LabelAnnotator(text_scale=0.5, text_padding=3)
    scene = labeller.annotate(scene, detections, labels)
    return cv2.cvtColor(scene, cv2.COLOR_BGR2RGB)


def save_png(image: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def detections_from_api(frame: dict[str, Any]) -> sv.Detections:
    """One frame of the API's JSON (`detections: [{label, confidence, bbox}]`) back into the
    in-memory carrier, for drawing."""
    items = frame["detections"]
    boxes = [[d["bbox"][k] for k in ("x1", "y1", "x2", "y2")] for d in items]
    return sv.Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        confidence=np.asarray([d["confidence"] for d in items], np.float32),
        class_id=np.zeros(len(items), int),
        data={"class_name": np.asarray([d["label"] for d in items], str)},
    )


def save_mp4(images: Sequence[np.ndarray], path: Path, fps: float) -> Path:
    """RGB frames -> H.264 (yuv420p needs even sizes: an odd last row/column is cropped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=max(1, round(fps)))
        height, width = images[0].shape[:2]
        stream.height, stream.width, stream.pix_fmt = (
            height - height % 2,
            width - width % 2,
            "yuv420p",
        )
        for image in images:
            picture = np.ascontiguousarray(image[: stream.height, : stream.width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    return path
