"""The dashboard (`GET /ui`) and the small APIs it uses: media listing, the live event
stream, and detection results drawn on their frames."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from zooserve.api.request_settings import apply_request_settings
from zooserve.api.routes_detect import detect_request
from zooserve.api.routes_models import manager_of
from zooserve.api.schemas import DetectRequest
from zooserve.api.streaming import ClosingStreamingResponse
from zooserve.api.uploads import UPLOAD_DIR
from zooserve.core.events import Event
from zooserve.media import MediaSource, resolve_media_path
from zooserve.media.annotate import jpeg_data_urls
from zooserve.pipelines.detect import DetectResult

router = APIRouter()
MEDIA_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".png", ".jpg", ".jpeg", ".bmp"}
#: Files `/api/media` lists at most, and directory entries it looks at to find them: a huge
#: media tree answers quickly with `truncated: true` instead of walking every entry.
MAX_LISTED_FILES = 1000
MAX_SCANNED_ENTRIES = 50_000
PAGE = resources.files("zooserve.api").joinpath("ui.html").read_text()


def _content_security_policy(page: str) -> str:
    """Only the page's own script and style run (by hash): markup that slipped into the DOM
    could not run an inline handler, load a remote script or send the API key elsewhere."""

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.S)
        digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in bodies)
        return " ".join(f"'sha256-{d}'" for d in digests)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


PAGE_HEADERS = {
    "Content-Security-Policy": _content_security_policy(PAGE),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """The page shell holds no data; everything it shows comes from the (keyed) APIs."""
    return HTMLResponse(PAGE, headers=PAGE_HEADERS)


def scan_media(root: Path) -> tuple[list[str], bool]:
    """Media files under `root` as sorted relative paths, and whether the list is cut short.

    Unreadable folders and entries are skipped, symlinked folders are not entered (no loops)
    and symlinked files are listed only when they stay inside `root`, as requests need; names
    that are not valid UTF-8 are skipped (a caller could not send them back as JSON).
    """
    try:
        real_root = root.resolve()
    except (OSError, RuntimeError):
        return [], False
    found: list[str] = []
    pending, scanned, truncated = [real_root], 0, False
    while pending and not truncated:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    scanned += 1
                    if scanned > MAX_SCANNED_ENTRIES or len(found) > MAX_LISTED_FILES:
                        truncated = True
                        break
                    relative = _listable(real_root, entry, pending)
                    if relative is not None:
                        found.append(relative)
        except OSError:  # unreadable, vanished or not a folder
            continue
    found.sort()
    return found[:MAX_LISTED_FILES], truncated or len(found) > MAX_LISTED_FILES


def _listable(root: Path, entry: os.DirEntry[str], pending: list[Path]) -> str | None:
    """The entry's path relative to `root` if it is a listable media file; queues folders."""
    try:
        entry.name.encode("utf-8")
        if entry.is_dir(follow_symlinks=False):
            if entry.name != UPLOAD_DIR:  # requests' own uploads, not media to pick
                pending.append(Path(entry.path))
            return None
        if Path(entry.name).suffix.lower() not in MEDIA_SUFFIXES or not entry.is_file():
            return None
        path = Path(entry.path)
        if entry.is_symlink() and not path.resolve().is_relative_to(root):
            return None
        return path.relative_to(root).as_posix()
    except (OSError, RuntimeError, UnicodeError, ValueError):
        return None


@router.get("/api/media")
async def list_media(request: Request) -> dict[str, Any]:
    """Media files a request may name (relative to media_root, which is never shown)."""
    files, truncated = await asyncio.to_thread(scan_media, manager_of(request).config.media_dir)
    return {"files": files, "truncated": truncated}


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

    return ClosingStreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.post("/api/annotate")
async def annotate_frames(body: DetectRequest, request: Request) -> StreamingResponse:
    """Detect, then return each frame with its boxes drawn (JPEG data URLs) beside the result.

    Each distinct frame is decoded and drawn once (annotate.jpeg_data_urls) and the JSON is
    written frame by frame, so repeating a frame costs bytes on the wire, not memory here.
    """
    manager = manager_of(request)
    apply_request_settings(body)
    result = await detect_request(manager, body)
    path = resolve_media_path(manager.config.media_dir, body.video_path)
    found = {f.frame_number: f.detections for f in result.frames}

    def draw() -> dict[int, str]:
        with MediaSource.open(path, max_pixels=manager.config.max_frame_pixels) as media:
            return jpeg_data_urls(media, found, manager.config.max_decoded_mb)

    images = await manager.infer(draw)
    return ClosingStreamingResponse(_annotated_json(result, images), media_type="application/json")


def _annotated_json(result: DetectResult, images: dict[int, str]) -> Iterator[str]:
    """`{"model", "frames": [...]}`, one frame at a time, in the requested order."""
    yield f'{{"model": {json.dumps(result.model)}, "frames": ['
    for index, frame in enumerate(result.frames):
        names = frame.detections.data.get("class_name", [])
        item = {
            "frame_number": frame.frame_number,
            "timestamp": frame.timestamp,
            "detections": len(frame.detections),
            "labels": sorted({str(n) for n in names}),
            "image": images[frame.frame_number],
        }
        yield ("," if index else "") + json.dumps(item)
    yield "]}"
