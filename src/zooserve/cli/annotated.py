"""Pictures and videos drawn from an answer: detections, tracks, text lines, on the frames of
the file the command read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")


def _frames(path: Path, numbers: Sequence[int]) -> tuple[list[Any], float]:
    from zooserve.media import MediaSource

    with MediaSource.open(path) as media:
        return [f.image for f in media.read(list(numbers))], media.fps or 1.0


def save_frames(drawn: list[Any], numbers: Sequence[int], out: Path, fps: float) -> list[Path]:
    """One video (`OUT.mp4`), one PNG (`OUT.png`), or `OUT-<frame>.png` per frame."""
    from zooserve.media.annotate import save_mp4, save_png

    if out.suffix.lower() in VIDEO_SUFFIXES:
        return [save_mp4(drawn, out, fps)]
    if len(drawn) == 1:
        return [save_png(drawn[0], out)]
    return [
        save_png(image, out.with_name(f"{out.stem}-{n:06d}{out.suffix or '.png'}"))
        for image, n in zip(drawn, numbers, strict=True)
    ]


def write_annotated(path: Path, out: Path, result: dict[str, Any]) -> list[Path]:
    """A detect answer's boxes and labels on its frames."""
    from zooserve.media.annotate import annotate, detections_from_api

    frames = result["frames"]
    numbers = [f["frame_number"] for f in frames]
    images, fps = _frames(path, numbers)
    drawn = [annotate(i, detections_from_api(f)) for i, f in zip(images, frames, strict=True)]
    return save_frames(drawn, numbers, out, fps)


def text_detections(lines: list[dict[str, Any]]) -> Any:
    """OCR lines with a box (xyxy frame px) as `sv.Detections` labelled with their text."""
    import numpy as np
    import supervision as sv

    boxed = [line for line in lines if line.get("box")]
    return sv.Detections(
        xyxy=np.asarray([line["box"] for line in boxed], np.float32).reshape(-1, 4),
        confidence=np.asarray([line["score"] for line in boxed], np.float32),
        class_id=np.zeros(len(boxed), int),
        data={"class_name": np.asarray([line["text"] for line in boxed], str)},
    )


def write_text_boxes(path: Path, out: Path, frames: list[dict[str, Any]]) -> list[Path]:
    """Each frame's OCR lines (`{frame_number, lines}`) boxed and labelled on the frame."""
    from zooserve.media.annotate import annotate

    numbers = [f["frame_number"] for f in frames]
    images, fps = _frames(path, numbers)
    drawn = [
        annotate(image, text_detections(f["lines"]))
        for image, f in zip(images, frames, strict=True)
    ]
    return save_frames(drawn, numbers, out, fps)


def write_tracks(path: Path, out: Path, result: dict[str, Any]) -> Path:
    """Draw each tracked object's box and id (and mask) on its frame, as an mp4."""
    import numpy as np
    import supervision as sv

    from zooserve.media.annotate import save_mp4
    from zooserve.media.rle import decode_mask

    frames = result["frames"]
    images, fps = _frames(path, [f["frame_number"] for f in frames])
    boxes_drawer, labels_drawer = sv.BoxAnnotator(), sv.LabelAnnotator(text_scale=0.5)
    masks_drawer = sv.MaskAnnotator()
    drawn = []
    for image, frame in zip(images, frames, strict=True):
        objects = frame["objects"]
        masks = [decode_mask(o["mask"]) for o in objects if o.get("mask")]
        ids = np.asarray([o["object_id"] for o in objects], int)
        detections = sv.Detections(
            xyxy=np.asarray(
                [[o["bbox"][k] for k in ("x1", "y1", "x2", "y2")] for o in objects], np.float32
            ).reshape(-1, 4),
            mask=np.stack(masks) if masks and len(masks) == len(objects) else None,
            tracker_id=ids,
            class_id=ids,
        )
        scene = image.copy()
        if detections.mask is not None:
            scene = masks_drawer.annotate(scene, detections)
        scene = boxes_drawer.annotate(scene, detections)
        drawn.append(labels_drawer.annotate(scene, detections, [f"#{i}" for i in ids]))
    return save_mp4(drawn, out, fps)
