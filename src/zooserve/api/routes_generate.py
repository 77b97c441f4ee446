"""POST /api/summarize and /api/augment: the language-model tasks, served by the engine pool."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from zooserve.api.request_settings import apply_request_settings
from zooserve.api.routes_models import manager_of
from zooserve.api.schemas import TaskSettings
from zooserve.api.uploads import task_request, upload_body_doc
from zooserve.engines.pool import EnginePool
from zooserve.pipelines.augment import MergedSuggestion, Ontology, augment
from zooserve.pipelines.summarize import summarize

router = APIRouter(prefix="/api")


def engines_of(request: Request) -> EnginePool:
    """The app's engine pool. The app's lifespan creates and starts it (probes, launches); an
    app built without that gets one on first use, with neither launches nor background probes
    (failed requests still mark engines down)."""
    pool: EnginePool | None = getattr(request.app.state, "engines", None)
    if pool is None:
        manager = manager_of(request)
        pool = request.app.state.engines = EnginePool(manager.config, manager)
    return pool


class SummarizeRequest(TaskSettings):
    video_path: str = Field(min_length=1, description="path inside media_root (video or image)")
    persona_context: str = Field(min_length=1, description="who the summary is for")
    frame_count: int = Field(default=8, ge=1, description="frames to sample (limit per model)")
    sampling_strategy: Literal["uniform", "interval", "keyframes", "scene_change"] = "uniform"
    model: str | None = None


class KeyFrameResponse(BaseModel):
    frame_number: int
    timestamp: float  # seconds
    description: str


class SummarizeResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    summary: str
    key_frames: list[KeyFrameResponse]
    objects: list[str]
    text_in_frames: list[str]
    model: str
    engine: str = Field(description="the engine that answered")
    processing_time: float
    sampled_frames: list[int]
    structured: bool = Field(description="false when the model's answer missed the schema")
    usage: dict[str, int]
    warnings: list[str]


class AugmentRequest(TaskSettings):
    persona_name: str = Field(min_length=1)
    existing_ontology: Ontology = Field(default_factory=Ontology)
    domain_context: str = ""
    task_description: str = ""
    model: str | None = None


class DroppedSuggestion(BaseModel):
    category: str
    name: str
    reason: str


class AugmentResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    persona_name: str
    entity_types: list[MergedSuggestion]
    event_types: list[MergedSuggestion]
    roles: list[MergedSuggestion]
    relationships: list[MergedSuggestion]
    reasoning: str
    model: str
    engine: str = Field(description="the engine that answered")
    processing_time: float
    structured: bool = Field(description="false when the model's answer missed the schema")
    dedup: Literal["embedding", "spelling"]
    dropped: list[DroppedSuggestion]
    warnings: list[str]


async def summarize_response(pool: EnginePool, body: SummarizeRequest) -> SummarizeResponse:
    """The route's work, reusable by a job runner (`(await ...).model_dump()`)."""
    result = await summarize(
        pool,
        body.video_path,
        body.persona_context,
        body.frame_count,
        body.sampling_strategy,
        model=body.model,
    )
    return SummarizeResponse(
        summary=result.summary,
        key_frames=[
            KeyFrameResponse(
                frame_number=k.frame_number,
                timestamp=round(k.timestamp, 6),
                description=k.description,
            )
            for k in result.key_frames
        ],
        objects=result.objects,
        text_in_frames=result.text_in_frames,
        model=result.model,
        engine=result.engine,
        processing_time=result.processing_time,
        sampled_frames=result.sampled_frames,
        structured=result.structured,
        usage=result.usage,
        warnings=result.warnings,
    )


async def augment_response(pool: EnginePool, body: AugmentRequest) -> AugmentResponse:
    """The route's work, reusable by a job runner (`(await ...).model_dump()`)."""
    result = await augment(
        pool,
        body.persona_name,
        body.existing_ontology,
        body.domain_context,
        body.task_description,
        model=body.model,
    )
    return AugmentResponse(
        persona_name=result.persona_name,
        **result.suggestions,
        reasoning=result.reasoning,
        model=result.model,
        engine=result.engine,
        processing_time=result.processing_time,
        structured=result.structured,
        dedup=result.dedup,
        dropped=[DroppedSuggestion(**d) for d in result.dropped],
        warnings=result.warnings,
    )


@router.post(
    "/summarize", response_model=SummarizeResponse, openapi_extra=upload_body_doc(SummarizeRequest)
)
async def summarize_route(request: Request) -> SummarizeResponse:
    """JSON `SummarizeRequest`, or multipart: `file` (video/image) + `request` (JSON fields)."""
    pool = engines_of(request)
    async with task_request(
        request, SummarizeRequest, manager_of(request).config.media_dir
    ) as body:
        return await summarize_response(pool, body)


@router.post("/augment", response_model=AugmentResponse)
async def augment_route(body: AugmentRequest, request: Request) -> AugmentResponse:
    apply_request_settings(body)
    return await augment_response(engines_of(request), body)
