"""The dashboard (`GET /ui`) and the small APIs it uses: media listing, the live event
stream, and detection results drawn on their frames."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import cv2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from zooserve.annotate import annotate
from zooserve.api.routes_detect import detect_request
from zooserve.api.routes_models import manager_of
from zooserve.api.schemas import DetectRequest
from zooserve.api.uploads import UPLOAD_DIR
from zooserve.events import Event
from zooserve.media import MediaSource, resolve_media_path

router = APIRouter()
MEDIA_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".png", ".jpg", ".jpeg", ".bmp"}
PAGE = resources.files("zooserve.api").joinpath("ui.html").read_text()


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """The page shell holds no data; everything it shows comes from the (keyed) APIs."""
    return HTMLResponse(PAGE)


@router.get("/api/media")
async def list_media(request: Request) -> dict[str, Any]:
    root = manager_of(request).config.media_dir

    def scan() -> list[str]:
        if not root.is_dir():
            return []
        found = [
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.suffix.lower() in MEDIA_SUFFIXES and UPLOAD_DIR not in p.parts and p.is_file()
        ]
        return sorted(found)[:500]

    return {"media_root": str(root), "files": await asyncio.to_thread(scan)}


@router.get("/api/events")
async def event_stream(request: Request) -> StreamingResponse:
    """Server-sent events: each load, unload, eviction and failure as it happens."""
    manager = manager_of(request)
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)

    def push(event: Event) -> None:
        if not queue.full():
            queue.put_nowait(event)

    async def stream() -> AsyncIterator[str]:
        manager.events.subscribe(push)
        try:
            for event in manager.events.recent(20):
                yield f"event: {event.kind}\ndata: {json.dumps(event.to_dict())}\n\n"
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=1.0)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {event.kind}\ndata: {json.dumps(event.to_dict())}\n\n"
        finally:
            manager.events.unsubscribe(push)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.post("/api/annotate")
async def annotate_frames(body: DetectRequest, request: Request) -> dict[str, Any]:
    """Detect, then return each frame with its boxes drawn (JPEG data URLs) beside the result."""
    manager = manager_of(request)
    result = await detect_request(manager, body)
    path = resolve_media_path(manager.config.media_dir, body.video_path)

    def draw() -> list[dict[str, Any]]:
        with MediaSource.open(path) as media:
            frames = media.read([f.frame_number for f in result.frames])
        drawn = []
        for frame, found in zip(frames, result.frames, strict=True):
            image = cv2.cvtColor(annotate(frame.image, found.detections), cv2.COLOR_RGB2BGR)
            _, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            drawn.append(
                {
                    "frame_number": frame.number,
                    "timestamp": frame.timestamp,
                    "detections": len(found.detections),
                    "labels": sorted({str(n) for n in found.detections.data.get("class_name", [])}),
                    "image": "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode(),
                }
            )
        return drawn

    return {"model": result.model, "frames": await manager.infer(draw)}
