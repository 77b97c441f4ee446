"""Video summarization: sampled frames + a persona-aware prompt -> a vision-language model.

The model answers in a JSON schema (`SummaryOutput`); engines that enforce schemas (SGLang,
vLLM, the local engine) always satisfy it. When an engine cannot (a plain OpenAI-compatible
server, a truncated answer), the summary degrades instead of failing: the raw text becomes the
summary, every sampled frame is listed, and `structured` is false with a warning saying why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from zooserve.core.errors import InvalidInput, ZooError, require_text
from zooserve.engines.pool import EnginePool
from zooserve.engines.types import ChatMessage, GenerationRequest
from zooserve.media import MediaSource, check_decoded_size, resolve_media_path, timestamp_of
from zooserve.pipelines.enrich_kinds import read_text, text_trigger
from zooserve.pipelines.selection import is_available

TASK = "video_summarization"
#: Images one request may send, unless the model's `options.max_images` says otherwise.
DEFAULT_MAX_IMAGES = 32
#: Longest image side sent to the model, unless `options.max_image_side` says otherwise.
DEFAULT_MAX_IMAGE_SIDE = 768
#: OCR lines at least this confident join `text_in_frames`.
OCR_MIN_SCORE = 0.8


class KeyFrameOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frame_number: int = Field(ge=0, description="one of the frame numbers shown")
    description: str = Field(max_length=500)


class SummaryOutput(BaseModel):
    """What the model must answer (all keys required, sizes bounded for constrained decoders)."""

    model_config = ConfigDict(extra="forbid")
    summary: str = Field(max_length=4000)
    key_frames: list[KeyFrameOut] = Field(max_length=DEFAULT_MAX_IMAGES)
    objects: list[str] = Field(max_length=50, description="objects and people seen")
    text_in_frames: list[str] = Field(max_length=50, description="text legible in the frames")


@dataclass(frozen=True)
class KeyFrame:
    frame_number: int
    timestamp: float  # seconds
    description: str


@dataclass
class SummaryResult:
    summary: str
    key_frames: list[KeyFrame]
    objects: list[str]
    text_in_frames: list[str]
    model: str
    engine: str
    processing_time: float  # seconds: sampling, decoding and generation
    sampled_frames: list[int]
    structured: bool
    usage: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def frame_limit(pool: EnginePool, model: str) -> int:
    options = pool.config.models[model].options
    return min(
        pool.config.max_frames_per_request, int(options.get("max_images", DEFAULT_MAX_IMAGES))
    )


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale RGB (H, W, 3) so its longest side is `max_side` px (never upscale)."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def build_messages(
    persona_context: str, images: Sequence[np.ndarray], numbers: Sequence[int], fps: float
) -> tuple[ChatMessage, ...]:
    system = (
        "You analyse surveillance and field video for a specific reader. Summarise what happens "
        "in the frames below for this persona, stressing what matters to them and omitting what "
        f"does not.\nPersona: {persona_context.strip()}\n"
        "List the key frames (by the frame numbers shown) with what each shows, the objects and "
        "people seen, and any legible text. Report only what is visible."
    )
    captions = tuple(f"Frame {n} at {timestamp_of(n, fps):.2f} s:" for n in numbers)
    ask = f"These are {len(numbers)} frames sampled from one video, in order. Summarise it."
    return (ChatMessage("system", system), ChatMessage("user", ask, tuple(images), captions))


def reconcile_key_frames(
    proposed: Sequence[KeyFrameOut], sampled: Sequence[int], fps: float
) -> list[KeyFrame]:
    """Snap each proposed frame number to the nearest sampled one (models misquote numbers),
    keep the first description per frame, order by frame, and time-stamp from the video."""
    chosen: dict[int, str] = {}
    for item in proposed:
        nearest = min(sampled, key=lambda n: (abs(n - item.frame_number), n))
        chosen.setdefault(nearest, item.description.strip())
    return [KeyFrame(n, timestamp_of(n, fps), chosen[n]) for n in sorted(chosen)]


async def summarize(
    pool: EnginePool,
    video_path: str,
    persona_context: str,
    frame_count: int,
    sampling_strategy: str,
    *,
    model: str | None = None,
) -> SummaryResult:
    """Sample, decode and send frames; return the model's summary (module docstring)."""
    started = time.perf_counter()
    require_text(persona_context, "persona_context")
    name = pool.select_model(TASK, model)
    limit = frame_limit(pool, name)
    if not 1 <= frame_count <= limit:
        raise InvalidInput(
            f"frame_count must be between 1 and {limit} for {name!r}, got {frame_count}",
            {"frame_count": frame_count, "limit": limit},
        )
    path = resolve_media_path(pool.config.media_dir, video_path)
    max_side = int(pool.config.models[name].options.get("max_image_side", DEFAULT_MAX_IMAGE_SIDE))
    with await asyncio.to_thread(
        MediaSource.open, path, max_pixels=pool.config.max_frame_pixels
    ) as source:
        check_decoded_size(source, frame_count, pool.config.max_decoded_mb)
        numbers = await asyncio.to_thread(source.sample, sampling_strategy, frame_count)
        frames = await asyncio.to_thread(source.read, numbers)
        fps = source.fps
    ocr_texts, ocr_warning = await _text_by_ocr(pool, [f.image for f in frames])
    images = await asyncio.to_thread(lambda: [_shrink(f.image, max_side) for f in frames])
    request = GenerationRequest(
        model=name,
        messages=build_messages(persona_context, images, numbers, fps),
        output=SummaryOutput,
    )
    generation = await pool.generate(request)
    warnings = [f"{f.engine} failed first: {f.reason}" for f in generation.failures]
    warnings += [ocr_warning] if ocr_warning else []
    data = generation.data
    if isinstance(data, SummaryOutput):
        summary, objects, texts = data.summary.strip(), data.objects, data.text_in_frames
        key_frames = reconcile_key_frames(data.key_frames, numbers, fps)
    else:
        warnings.append(
            f"the model's answer was not structured ({generation.invalid_reason}); the summary "
            "is its raw text and every sampled frame is listed"
        )
        summary, objects, texts = generation.text.strip()[:4000], [], []
        key_frames = [KeyFrame(n, timestamp_of(n, fps), "") for n in numbers]
    return SummaryResult(
        summary=summary,
        key_frames=key_frames,
        objects=_unique(objects),
        text_in_frames=_unique([*ocr_texts, *texts]),
        model=name,
        engine=generation.engine,
        processing_time=time.perf_counter() - started,
        sampled_frames=list(numbers),
        structured=isinstance(data, SummaryOutput),
        usage=generation.usage,
        warnings=warnings,
    )


def _unique(items: Sequence[str]) -> list[str]:
    """Strip, drop empties and case-insensitive repeats, keep first-seen order."""
    seen: set[str] = set()
    out = []
    for item in (i.strip() for i in items):
        if item and item.casefold() not in seen:
            seen.add(item.casefold())
            out.append(item)
    return out


async def _text_by_ocr(pool: EnginePool, images: list[np.ndarray]) -> tuple[list[str], str | None]:
    """Lines the zoo's `text` trigger (whole-frame OCR) reads with confidence >= OCR_MIN_SCORE,
    so `text_in_frames` holds what is really written, not only what the model says; and a
    warning instead of a failure when OCR cannot run."""
    trigger = text_trigger(pool.config.zoo.triggers)
    if trigger is None or not is_available(pool.manager, trigger.model):
        return [], None
    try:
        values = await read_text(pool.manager, trigger.model, images)
    except ZooError as exc:
        return [], f"text_in_frames: OCR with {trigger.model} failed: {exc.message}"
    lines = [line for value in values for line in value.get("lines", [])]
    return [str(line["text"]) for line in lines if line.get("score", 0) >= OCR_MIN_SCORE], None
