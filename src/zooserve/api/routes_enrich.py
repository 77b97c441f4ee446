"""POST /api/enrich: the zoo's triggers over detections on frames of a video or image."""

from __future__ import annotations

from typing import Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import Field, model_validator

from zooserve.api.routes_models import manager_of
from zooserve.api.schemas import EnrichResponse, PixelCoordinate, StrictRequest, TaskSettings
from zooserve.api.serializers import enrich_response as enrich_result_response
from zooserve.api.uploads import task_request, upload_body_doc
from zooserve.families.base import make_detections
from zooserve.manager import ModelManager
from zooserve.pipelines.enrich import enrich

router = APIRouter(prefix="/api")


class GivenBox(StrictRequest):
    x1: PixelCoordinate
    y1: PixelCoordinate
    x2: PixelCoordinate
    y2: PixelCoordinate

    @model_validator(mode="after")
    def _not_empty(self) -> GivenBox:
        if not (self.x2 > self.x1 and self.y2 > self.y1):
            raise ValueError("expected x2 > x1 and y2 > y1 (xyxy pixels)")
        return self


class GivenDetection(StrictRequest):
    frame_number: int = Field(ge=0)
    label: str = Field(min_length=1)
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    bbox: GivenBox


class Sampling(StrictRequest):
    strategy: Literal["uniform", "interval", "keyframes", "scene_change"] = "uniform"
    count: int = Field(default=8, ge=1)


class EnrichRequest(TaskSettings):
    video_path: str = Field(min_length=1, description="path inside media_root (video or image)")
    frame_numbers: list[int] | None = Field(default=None, min_length=1)
    sampling: Sampling | None = None
    detections: list[GivenDetection] | None = Field(
        default=None, description="primary detections; when absent the detector finds them"
    )
    model: str | None = Field(default=None, description="the primary detector")
    confidence_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    prompts: list[str] | None = Field(default=None, description="detector text queries")
    triggers: list[str] | None = Field(default=None, description="default: every enabled one")
    include_embeddings: bool = False
    order: Literal["model_major", "per_detection"] = "model_major"

    @model_validator(mode="after")
    def _one_frame_selection(self) -> EnrichRequest:
        if self.frame_numbers is not None and self.sampling is not None:
            raise ValueError("give frame_numbers or sampling, not both")
        return self


@router.post("/enrich", response_model=EnrichResponse, openapi_extra=upload_body_doc(EnrichRequest))
async def enrich_route(request: Request) -> EnrichResponse:
    """JSON `EnrichRequest`, or multipart: `file` (video/image) + `request` (JSON fields)."""
    manager = manager_of(request)
    async with task_request(request, EnrichRequest, manager.config.media_dir) as body:
        return await enrich_response(manager, body)


async def enrich_response(manager: ModelManager, body: EnrichRequest) -> EnrichResponse:
    """The route's work, reusable by async jobs."""
    given = None
    if body.detections is not None:
        by_frame: dict[int, list[GivenDetection]] = {}
        for d in body.detections:
            by_frame.setdefault(d.frame_number, []).append(d)
        given = {
            n: make_detections(
                np.array([[d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2] for d in ds]),
                np.array([d.confidence for d in ds]),
                [d.label for d in ds],
                sorted({d.label for d in ds}),
            )
            for n, ds in by_frame.items()
        }
    result = await enrich(
        manager,
        body.video_path,
        body.frame_numbers,
        sampling=(body.sampling.strategy, body.sampling.count) if body.sampling else None,
        detections=given,
        model=body.model,
        confidence_threshold=body.confidence_threshold,
        prompts=body.prompts,
        triggers=body.triggers,
        include_embeddings=body.include_embeddings,
        order=body.order,
    )
    return enrich_result_response(result)
