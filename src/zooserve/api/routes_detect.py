"""POST /api/detect."""

from __future__ import annotations

from fastapi import APIRouter, Request

from zooserve.api.routes_models import manager_of
from zooserve.api.schemas import (
    BBox,
    Detection,
    DetectRequest,
    DetectResponse,
    FrameResult,
    VideoInfo,
)
from zooserve.api.uploads import task_request, upload_body_doc
from zooserve.jobs import Progress
from zooserve.manager import ModelManager
from zooserve.pipelines.detect import DetectResult, detect

router = APIRouter(prefix="/api")


def to_response(result: DetectResult) -> DetectResponse:
    frames = []
    for frame in result.frames:
        d = frame.detections
        names = d.data.get("class_name", [""] * len(d))
        scores = d.confidence if d.confidence is not None else [1.0] * len(d)
        frames.append(
            FrameResult(
                frame_number=frame.frame_number,
                timestamp=round(frame.timestamp, 6),
                detections=[
                    Detection(
                        label=str(label),
                        confidence=float(score),
                        bbox=BBox(x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3])),
                    )
                    for b, score, label in zip(d.xyxy, scores, names, strict=True)
                ],
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


async def detect_request(
    manager: ModelManager, body: DetectRequest, progress: Progress | None = None
) -> DetectResult:
    """The detect pipeline for a `DetectRequest` (the route, async jobs and the dashboard)."""
    return await detect(
        manager,
        body.video_path,
        body.frame_numbers,
        model=body.model,
        confidence_threshold=body.confidence_threshold,
        prompts=body.prompts,
        progress=progress,
    )


@router.post("/detect", response_model=DetectResponse, openapi_extra=upload_body_doc(DetectRequest))
async def detect_route(request: Request) -> DetectResponse:
    """JSON `DetectRequest`, or multipart: `file` (video/image) + `request` (JSON fields)."""
    manager = manager_of(request)
    async with task_request(request, DetectRequest, manager.config.media_dir) as body:
        result = await detect_request(manager, body)
    request.state.model = result.model  # labels this request's metrics
    return to_response(result)
