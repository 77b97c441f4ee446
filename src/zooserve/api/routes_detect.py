"""POST /api/detect."""

from __future__ import annotations

from fastapi import APIRouter, Request

from zooserve.api.routes_models import manager_of
from zooserve.api.schemas import DetectRequest, DetectResponse
from zooserve.api.serializers import detect_response
from zooserve.api.uploads import task_request, upload_body_doc
from zooserve.jobs.queue import Progress
from zooserve.manager import ModelManager
from zooserve.pipelines.detect import DetectResult, detect

router = APIRouter(prefix="/api")


#: The detect response's serializer (async jobs and the CLI use it under this name).
to_response = detect_response


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
