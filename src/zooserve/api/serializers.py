"""The API edge: one serializer per response shape (detect, track, enrich), from what the
pipelines return (per frame `sv.Detections`: a `FrameDetections` for detect and track, a
`FrameEnrichment` whose rows carry their enrichments for enrich) to the documented pydantic
models. Nothing else converts results for the wire."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import supervision as sv

from zooserve.api.schemas import (
    BBox,
    Detection,
    DetectResponse,
    EnrichedDetection,
    EnrichedFrame,
    EnrichResponse,
    FrameResult,
    LoadOut,
    RleMaskOut,
    StageErrorOut,
    StageOut,
    TrackedFrameOut,
    TrackedObjectOut,
    TrackResponse,
    VideoInfo,
)
from zooserve.families.results import FrameDetections, row_mask
from zooserve.media.rle import encode_mask
from zooserve.pipelines.detect import DetectResult
from zooserve.pipelines.enrich import EnrichResult
from zooserve.pipelines.enrich_detections import ENRICHMENTS, SOURCE
from zooserve.pipelines.track import TrackReport


def bbox(xyxy: Any, digits: int | None = None) -> BBox:
    """An xyxy row (px) as the API's box, rounded to `digits` decimals when given."""
    x1, y1, x2, y2 = (float(v) if digits is None else round(float(v), digits) for v in xyxy)
    return BBox(x1=x1, y1=y1, x2=x2, y2=y2)


# --- detect ----------------------------------------------------------------------------------


def detect_response(result: DetectResult) -> DetectResponse:
    """POST /api/detect: boxes as the detector gave them, labels from data["class_name"]."""
    frames = []
    for frame in result.frames:
        d = frame.detections
        names = d.data.get("class_name", [""] * len(d))
        scores = d.confidence if d.confidence is not None else np.ones(len(d))
        detections = [
            Detection(label=str(label), confidence=float(score), bbox=bbox(row))
            for row, score, label in zip(d.xyxy, scores, names, strict=True)
        ]
        frames.append(
            FrameResult(
                frame_number=frame.frame_number,
                timestamp=round(frame.timestamp, 6),
                detections=detections,
            )
        )
    return DetectResponse(
        model=result.model,
        frames=frames,
        processing_time=result.processing_time,
        video=VideoInfo(
            width=result.width, height=result.height, fps=result.fps, frame_count=result.frame_count
        ),
        prompts=result.prompts,
    )


# --- track -----------------------------------------------------------------------------------


def tracked_frame(frame: FrameDetections) -> TrackedFrameOut:
    """One tracked frame: per object its id (tracker_id), box, score, occlusion and its mask
    as COCO RLE (null for box-only trackers and rows the tracker had no mask for)."""
    d = frame.detections
    ids = d.tracker_id if d.tracker_id is not None else np.zeros(len(d), int)
    scores = d.confidence if d.confidence is not None else np.ones(len(d))
    occluded = d.data.get("occluded", np.zeros(len(d), bool))
    objects = []
    for row in range(len(d)):
        mask = row_mask(d, row)
        objects.append(
            TrackedObjectOut(
                object_id=int(ids[row]),
                bbox=bbox(d.xyxy[row], 2),
                mask=None if mask is None else RleMaskOut(**encode_mask(mask)),
                score=round(float(scores[row]), 4),
                occluded=bool(occluded[row]),
            )
        )
    return TrackedFrameOut(
        frame_number=frame.frame_number, timestamp=round(frame.timestamp, 6), objects=objects
    )


def track_summary(report: TrackReport) -> dict[str, Any]:
    """A tracking run's summary: the stream's last line, and the head of a JSON answer."""
    return {
        "model": report.model,
        "detector": report.detector,
        "fps": report.fps,
        "processing_time": report.processing_time,
        "frames": report.frames,
        "video": VideoInfo(
            width=report.width, height=report.height, fps=report.fps, frame_count=report.frame_count
        ).model_dump(),
        "peak_session_bytes": report.peak_session_bytes,
    }


def track_response(report: TrackReport, collected: list[TrackedFrameOut]) -> TrackResponse:
    """POST /api/track as one JSON document (frames serialized as they came)."""
    head = track_summary(report)
    return TrackResponse(
        model=head["model"],
        detector=head["detector"],
        fps=head["fps"],
        processing_time=head["processing_time"],
        video=VideoInfo(**head["video"]),
        frames=collected,
    )


# --- enrich ----------------------------------------------------------------------------------


def enrich_response(result: EnrichResult) -> EnrichResponse:
    """POST /api/enrich: enriched detections (what detector triggers found nested in their
    parent's enrichments), per-frame and batch values, stage reports, loads and errors."""
    frames = [
        EnrichedFrame(
            frame_number=f.frame_number,
            timestamp=round(f.timestamp, 6),
            width=f.width,
            height=f.height,
            detections=enriched_detections(f.detections),
            enrichments={k: _value(v) for k, v in f.enrichments.items()},
        )
        for f in result.frames
    ]
    return EnrichResponse(
        frames=frames,
        batch=result.batch,
        clip=result.clip,
        errors=[StageErrorOut(**asdict(e)) for e in result.errors],
        loads=[LoadOut(**asdict(load)) for load in result.loads],
        stages=[StageOut(**asdict(s)) for s in result.stages],
        detector=result.detector,
        order=result.order,
        processing_time=result.processing_time,
    )


def enriched_detections(detections: sv.Detections) -> list[EnrichedDetection]:
    """Each row of an enrichment layer (pipelines/enrich_detections.py) with its enrichments:
    box rounded to 0.01 px, confidence to 4 decimals."""
    d = detections
    scores = d.confidence if d.confidence is not None else np.ones(len(d))
    columns = (d.data["class_name"], d.data[SOURCE], d.data[ENRICHMENTS])
    rows = zip(d.xyxy, scores, *columns, strict=True)
    return [
        EnrichedDetection(
            label=str(label),
            confidence=round(float(score), 4),
            bbox=bbox(box, 2),
            source=str(source),
            enrichments={k: _value(v) for k, v in enrichments.items()},
        )
        for box, score, label, source, enrichments in rows
    ]


def _value(value: Any) -> Any:
    """An enrichment value; a detector trigger's value is an enrichment layer's rows."""
    if isinstance(value, sv.Detections):
        return [found.model_dump() for found in enriched_detections(value)]
    return value
