"""The tasks an async job may run: each is its route's request model plus the same work the
route does, given the app's services (manager, engine pool, tracking sessions)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from zooserve.api.routes_detect import detect_request, to_response
from zooserve.api.routes_enrich import EnrichRequest, enrich_response
from zooserve.api.routes_generate import (
    AugmentRequest,
    SummarizeRequest,
    augment_response,
    summarize_response,
)
from zooserve.api.routes_track import TrackRequest, frame_out, start_tracking, track_response
from zooserve.api.schemas import DetectRequest
from zooserve.engines.pool import EnginePool
from zooserve.jobs.queue import Progress
from zooserve.manager import ModelManager
from zooserve.pipelines.track import TrackReport
from zooserve.pipelines.track_sessions import TrackingSessions


@dataclass(frozen=True)
class Services:
    manager: ModelManager
    engines: EnginePool
    sessions: TrackingSessions


TaskEntry = tuple[type[BaseModel], Callable[[Services, Any, Progress], Awaitable[dict[str, Any]]]]


async def _detect(services: Services, body: DetectRequest, progress: Progress) -> dict[str, Any]:
    return to_response(await detect_request(services.manager, body, progress)).model_dump()


async def _track(services: Services, body: TrackRequest, progress: Progress) -> dict[str, Any]:
    report = TrackReport()
    total = body.frame_range.end - body.frame_range.start + 1
    collected = []
    frames = start_tracking(services.manager, services.sessions, body, report)
    try:
        async for frame in frames:
            collected.append(frame_out(frame))
            progress(len(collected), total)
    finally:
        await frames.aclose()
    return track_response(report, collected).model_dump()


async def _enrich(services: Services, body: EnrichRequest, progress: Progress) -> dict[str, Any]:
    return (await enrich_response(services.manager, body)).model_dump()


async def _summarize(
    services: Services, body: SummarizeRequest, progress: Progress
) -> dict[str, Any]:
    return (await summarize_response(services.engines, body)).model_dump()


async def _augment(services: Services, body: AugmentRequest, progress: Progress) -> dict[str, Any]:
    return (await augment_response(services.engines, body)).model_dump()


def job_tasks() -> dict[str, TaskEntry]:
    return {
        "detect": (DetectRequest, _detect),
        "track": (TrackRequest, _track),
        "enrich": (EnrichRequest, _enrich),
        "summarize": (SummarizeRequest, _summarize),
        "augment": (AugmentRequest, _augment),
    }
