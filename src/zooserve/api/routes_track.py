"""POST /api/track: one JSON document, or with `stream: true` (or `Accept:
application/x-ndjson`) NDJSON: a `{"type": "frame", ...}` line per frame as it is produced,
then `{"type": "summary", ...}` (or `{"type": "error", "error": {...}}` if the run fails after
the first frame). Mistakes in the request are found before the first frame, so they get the
usual status codes; a stream never holds more than the frame in flight.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field

from zooserve.api.routes_models import manager_of
from zooserve.api.schemas import PixelCoordinate, StrictRequest, TaskSettings, TrackResponse
from zooserve.api.serializers import track_response, track_summary, tracked_frame
from zooserve.api.streaming import ClosingStreamingResponse
from zooserve.api.uploads import task_request, upload_body_doc
from zooserve.core.errors import ZooError
from zooserve.families.kinds import TrackPrompt
from zooserve.families.results import FrameDetections
from zooserve.manager import ModelManager
from zooserve.pipelines.track import FrameRange, TrackReport, track
from zooserve.pipelines.track_sessions import TrackingSessions

router = APIRouter(prefix="/api")
log = logging.getLogger("zooserve.api")
NDJSON = "application/x-ndjson"


class RleMask(StrictRequest):
    size: list[int] = Field(description="[height, width]")
    counts: str | list[int] = Field(description="COCO RLE counts (compressed string)")


class ObjectPrompt(StrictRequest):
    object_id: int = Field(ge=0)
    frame_number: int | None = Field(default=None, description="default: frame_range.start")
    box: list[PixelCoordinate] | None = Field(
        default=None, min_length=4, max_length=4, description="[x1, y1, x2, y2] px"
    )
    # Pairs as 2-item lists, not tuples: strict validation of a parsed dict (jobs, uploads)
    # takes no JSON array for a tuple.
    points: list[Annotated[list[PixelCoordinate], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list, description="[[x, y], ...]"
    )
    point_labels: list[int] = Field(default_factory=list, description="1 object, 0 background")
    mask: RleMask | None = None


class FrameRangeBody(StrictRequest):
    start: int = Field(ge=0)
    end: int = Field(ge=0, description="inclusive")


class TrackRequest(TaskSettings):
    video_path: str = Field(min_length=1)
    frame_range: FrameRangeBody
    tracking_model: str | None = None
    confidence_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    prompts: list[str | ObjectPrompt] = Field(
        default_factory=list, description='texts (["person"]) or object prompts'
    )
    stream: bool = False


def sessions_of(request: Request) -> TrackingSessions:
    """The app's tracking sessions, created (with their sweeper) on first use."""
    state = request.app.state
    sessions: TrackingSessions | None = getattr(state, "tracking_sessions", None)
    if sessions is None:
        sessions = state.tracking_sessions = TrackingSessions(manager_of(request))
        sessions.start_sweeper()
    return sessions


def to_prompts(body: TrackRequest) -> list[str | TrackPrompt]:
    prompts: list[str | TrackPrompt] = []
    for item in body.prompts:
        if isinstance(item, str):
            prompts.append(item)
            continue
        prompts.append(
            TrackPrompt(
                object_id=item.object_id,
                frame_number=body.frame_range.start
                if item.frame_number is None
                else item.frame_number,
                box=tuple(item.box) if item.box is not None else None,  # type: ignore[arg-type]
                points=tuple((p[0], p[1]) for p in item.points),
                point_labels=tuple(item.point_labels),
                mask_rle=item.mask.model_dump() if item.mask is not None else None,
            )
        )
    return prompts


#: Serializers of the track response (async jobs and the CLI use them under these names).
frame_out = tracked_frame
summary = track_summary


def start_tracking(
    manager: ModelManager,
    sessions: TrackingSessions,
    body: TrackRequest,
    report: TrackReport,
    *,
    streamed: bool = False,
) -> AsyncGenerator[FrameDetections, None]:
    """A non-streamed run (a JSON answer or a job) collects every frame: its range is bounded."""
    return track(
        manager,
        body.video_path,
        FrameRange(body.frame_range.start, body.frame_range.end),
        prompts=to_prompts(body),
        tracking_model=body.tracking_model,
        confidence_threshold=body.confidence_threshold,
        report=report,
        sessions=sessions,
        max_frames=None if streamed else manager.config.max_track_frames,
    )


@router.post(
    "/track",
    response_model=TrackResponse,
    # A stream's lines are documented in the module docstring; a line-per-object body has no
    # single JSON schema.
    responses={200: {"content": {NDJSON: {}}}},
    openapi_extra=upload_body_doc(TrackRequest),
)
async def track_route(request: Request) -> Any:
    """JSON `TrackRequest`, or multipart: `file` (video) + `request` (JSON fields). An uploaded
    file is removed when the request ends; a stream keeps reading the already-open file."""
    manager = manager_of(request)
    async with task_request(request, TrackRequest, manager.config.media_dir) as body:
        return await _track(body, request, manager)


async def _track(body: TrackRequest, request: Request, manager: ModelManager) -> Any:
    report = TrackReport()
    streamed = bool(body.stream) or NDJSON in request.headers.get("accept", "")
    frames = start_tracking(manager, sessions_of(request), body, report, streamed=streamed)
    # Everything the caller can get wrong fails here, before a status line is sent.
    first = await anext(frames)
    if streamed:
        return ClosingStreamingResponse(_ndjson(first, frames, report), media_type=NDJSON)
    collected = [frame_out(first)] + [frame_out(f) async for f in frames]
    return track_response(report, collected)


async def _ndjson(
    first: FrameDetections, frames: AsyncGenerator[FrameDetections, None], report: TrackReport
) -> AsyncIterator[bytes]:
    try:
        yield _line({"type": "frame", **frame_out(first).model_dump()})
        async for frame in frames:
            yield _line({"type": "frame", **frame_out(frame).model_dump()})
    except ZooError as exc:  # the status line is sent: the error travels as the last line
        error = {"code": exc.code, "message": exc.message, "details": exc.details}
        yield _line({"type": "error", "error": error})
        return
    except Exception:  # our bug: log the trace, never send it
        log.exception("POST /api/track failed mid-stream")
        error = {"code": "internal_error", "message": "internal error; see the server log"}
        yield _line({"type": "error", "error": {**error, "details": {}}})
        return
    finally:
        await frames.aclose()
    yield _line({"type": "summary", **summary(report)})


def _line(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, separators=(",", ":")) + "\n").encode()
