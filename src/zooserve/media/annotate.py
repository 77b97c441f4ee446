"""Draw detections on frames (supervision annotators) for people to look at."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import supervision as sv

from zooserve.core.errors import MediaTooLarge
from zooserve.media import MediaSource, check_decoded_size

#: JPEG quality of the frames drawn for the dashboard.
JPEG_QUALITY = 85


def annotate(image: np.ndarray, detections: sv.Detections) -> np.ndarray:
    """RGB image + detections -> RGB image with boxes and `label score` captions."""
    return cv2.cvtColor(_drawn_bgr(image, detections), cv2.COLOR_BGR2RGB)


def _drawn_bgr(image: np.ndarray, detections: sv.Detections) -> np.ndarray:
    """The drawing in OpenCV's BGR order, on a converted copy (the caller's image is kept)."""
    names = detections.data.get("class_name", [""] * len(detections))
    scores = detections.confidence if detections.confidence is not None else [1.0] * len(detections)
    labels = [f"{n} {s:.2f}" for n, s in zip(names, scores, strict=True)]
    scene: np.ndarray = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    scene = sv.BoxAnnotator(thickness=2).annotate(scene, detections)
    labeller = sv.LabelAnnotator(text_scale=0.5, text_padding=3)
    return labeller.annotate(scene, detections, labels)


def jpeg_data_urls(
    source: MediaSource, found: Mapping[int, sv.Detections], limit_mb: float
) -> dict[int, str]:
    """Frame number -> its frame with `found[number]` drawn, as a JPEG data URL.

    Each distinct frame is decoded once, in ascending order, and kept only as its JPEG, so a
    request that repeats one big frame 128 times costs one decode. What is held at once (one
    decoded frame, then the JPEGs for the response) is checked against `limit_mb`
    (max_decoded_mb), the decoded frame before it is decoded.
    """
    check_decoded_size(source, 1, limit_mb)
    urls: dict[int, str] = {}
    held = 0
    for number in sorted(found):
        (frame,) = source.read([number])
        drawn = _drawn_bgr(frame.image, found[number])
        del frame  # one decoded frame at a time
        _, jpeg = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        urls[number] = "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode()
        held += len(urls[number])
        if held > limit_mb * 2**20:
            raise MediaTooLarge(
                f"the {len(found)} annotated frames of {source.width}x{source.height} exceed "
                f"{limit_mb:.0f} MB as JPEG (max_decoded_mb): ask for fewer frames",
                {"frames": len(found), "width": source.width, "height": source.height},
            )
    return urls


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
