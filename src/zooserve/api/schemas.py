"""Request and response models of the HTTP contract (DESIGN.md "HTTP surface")."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from zooserve.api.request_settings import KEEP_ALIVE_DOC, KeepAlive


class StrictRequest(BaseModel):
    """Base of every request body: unknown fields are refused and JSON types are taken as they
    are (no `true` read as 1, no `"yes"` as a bool, no `"3"` or `1.0` as an int); an int is
    still a valid float, as in JSON."""

    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())


#: A pixel coordinate a caller may give: finite and far beyond any frame, yet well inside
#: float32 (boxes become float32 arrays; 1e300 would turn into inf there).
PixelCoordinate = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]


class ErrorInfo(BaseModel):
    code: str = Field(description="stable, machine-readable (e.g. `invalid_request`)")
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    """The one envelope of every 4xx/5xx answer."""

    error: ErrorInfo


class TaskSettings(StrictRequest):
    """Fields every task body takes beside its own (request_settings.py applies them)."""

    keep_alive: KeepAlive = Field(default=None, description=KEEP_ALIVE_DOC)


class ModelRef(StrictRequest):
    model_id: str = Field(
        min_length=1, max_length=200, description="the model's name under `models:`"
    )


class LoadRequest(ModelRef, TaskSettings):
    """POST /models/load: the model, and how long it stays once loaded (`keep_alive`)."""


class DetectRequest(TaskSettings):
    video_path: str = Field(min_length=1, description="path inside media_root (video or image)")
    frame_numbers: list[int] = Field(default_factory=lambda: [0], min_length=1)
    model: str | None = None
    confidence_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    prompts: list[str] | None = Field(default=None, description="text queries (open vocabulary)")


class BBox(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    label: str
    confidence: float
    bbox: BBox


class FrameResult(BaseModel):
    frame_number: int
    timestamp: float
    detections: list[Detection]


class VideoInfo(BaseModel):
    width: int
    height: int
    fps: float
    frame_count: int


class DetectResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    frames: list[FrameResult]
    processing_time: float
    video: VideoInfo
    prompts: list[str] | None


class PublicHealthResponse(BaseModel):
    """/health for a caller without the key: liveness and memory, nothing about models."""

    model_config = ConfigDict(extra="forbid")  # never mistaken for the full answer

    status: str
    device: str
    gpu_memory_allocated: int | None
    gpu_memory_reserved: int | None
    memory_budget_mb: float
    memory_used_mb: float
    process_rss_mb: float
    nvml: dict[str, int] | None = None


class HealthResponse(PublicHealthResponse):
    """/health with the key (or with none configured): also models and engines."""

    model_config = ConfigDict(extra="ignore")

    models_loaded: list[str]
    engines: dict[str, dict[str, Any]] | None = None
    scheduler: dict[str, Any] | None = Field(
        default=None,
        description="the admission queue and the memory ledger: pending, max_pending, "
        "used_bytes, peak_used_bytes, budget_bytes",
    )


class ModelsInfoResponse(BaseModel):
    available_models: dict[str, list[str]]
    loaded_models: list[str]
    device: str
    memory_budget_mb: float
    memory_used_mb: float
    models: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]
    engines: dict[str, dict[str, Any]] | None = None


class RleMaskOut(BaseModel):
    size: list[int] = Field(description="[height, width]")
    counts: str | list[int] = Field(description="COCO RLE counts (compressed string)")


class TrackedObjectOut(BaseModel):
    object_id: int
    bbox: BBox
    mask: RleMaskOut | None
    score: float
    occluded: bool


class TrackedFrameOut(BaseModel):
    frame_number: int
    timestamp: float
    objects: list[TrackedObjectOut]


class TrackResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    detector: str | None
    fps: float
    processing_time: float
    video: VideoInfo
    frames: list[TrackedFrameOut]


class EnrichedDetection(BaseModel):
    label: str
    confidence: float
    bbox: BBox
    source: str
    #: output name -> value; detector outputs are lists of detections of this same shape.
    enrichments: dict[str, Any]


class EnrichedFrame(BaseModel):
    frame_number: int
    timestamp: float
    width: int
    height: int
    detections: list[EnrichedDetection]
    enrichments: dict[str, Any]


class StageErrorOut(BaseModel):
    stage: str
    model: str
    code: str
    message: str


class LoadOut(BaseModel):
    model: str
    stages: list[str]
    loaded: bool
    load_seconds: float | None
    bytes: int | None
    evicted: list[str]
    failed: bool


class StageOut(BaseModel):
    name: str
    model: str
    scope: str
    status: str
    inputs: int
    seconds: float
    reason: str | None


class EnrichResponse(BaseModel):
    frames: list[EnrichedFrame]
    batch: dict[str, Any]
    clip: dict[str, Any]
    errors: list[StageErrorOut]
    loads: list[LoadOut]
    stages: list[StageOut]
    detector: str | None
    order: str
    processing_time: float
