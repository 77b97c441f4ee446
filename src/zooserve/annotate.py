"""Draw detections on frames (supervision annotators) for people to look at."""

from __future__ import annotations

from pathlib import Path

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
