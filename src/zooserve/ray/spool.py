"""Uploads through the Ray ingress: spooled to shared storage as they arrive, never held whole.

The ingress writes a multipart body to `media_root/.uploads-ray/<id>` a chunk at a time and
forwards only the file's path; the replica's app reads it from there (asgi.py) and stores the
upload as the single-node server does. Its memory therefore does not grow with the upload
(measured before: 10 x 50 MB uploads grew the ingress by 1.2 GB and kept 800 MB). media_root
must be the same storage on every machine (as for `video_path` media). The folder is not
`.uploads`: a replica sweeps `.uploads` when it starts, which would delete spools in flight.
While the body streams by, python-multipart picks out the small `request` part, the only
part the ingress needs (to route by model).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

log = logging.getLogger("zooserve.ray")
SPOOL_DIR = ".uploads-ray"
#: Bytes gathered before one write to disk (off the event loop).
WRITE_CHUNK = 1 << 20
#: The `request` part is a small JSON object; a bigger one is not read for routing.
MAX_FIELD_BYTES = 1 << 20


def is_multipart(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


class RequestPart:
    """Collects the multipart `request` text part from chunks as they pass (any order of
    parts); `fields` is {} for a body it cannot read (the replica then answers the 4xx)."""

    def __init__(self, content_type: str) -> None:
        _, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        self.parser: MultipartParser | None = None
        if boundary:
            self.parser = MultipartParser(boundary, self._callbacks())
        self.header_name = b""
        self.headers: dict[bytes, bytes] = {}
        self.collecting = False
        self.value = bytearray()
        self.found: bytes | None = None

    def _callbacks(self) -> Any:
        def header_field(data: bytes, start: int, end: int) -> None:
            self.header_name += data[start:end]

        def header_value(data: bytes, start: int, end: int) -> None:
            key = self.header_name.lower()
            self.headers[key] = self.headers.get(key, b"") + data[start:end]

        def header_end() -> None:
            self.header_name = b""

        def headers_finished() -> None:
            _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
            self.collecting = params.get(b"name") == b"request" and b"filename" not in params
            self.headers, self.value = {}, bytearray()

        def part_data(data: bytes, start: int, end: int) -> None:
            if self.collecting and len(self.value) + end - start <= MAX_FIELD_BYTES:
                self.value += data[start:end]
            elif self.collecting:
                self.collecting = False

        def part_end() -> None:
            if self.collecting and self.found is None:
                self.found = bytes(self.value)
            self.collecting, self.value = False, bytearray()

        return {
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_headers_finished": headers_finished,
            "on_part_data": part_data,
            "on_part_end": part_end,
        }

    def feed(self, chunk: bytes) -> None:
        if self.parser is None:
            return
        try:
            self.parser.write(chunk)
        except Exception:  # malformed: the replica's own parser reports it
            self.parser = None

    @property
    def fields(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.found or b"{}")
        except (ValueError, RecursionError):
            return {}
        return parsed if isinstance(parsed, dict) else {}


@dataclass
class Spool:
    """One spooled body: its file, its size and the `request` part's fields."""

    path: Path
    size: int = 0
    fields: dict[str, Any] = field(default_factory=dict)

    def remove(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


async def spool_body(chunks: AsyncIterable[bytes], content_type: str, media_root: Path) -> Spool:
    """Write the body to a fresh folder under media_root/.uploads-ray, one chunk at a time."""
    folder = media_root / SPOOL_DIR / uuid.uuid4().hex
    await asyncio.to_thread(folder.mkdir, parents=True)
    spool = Spool(folder / "body")
    sniffer = RequestPart(content_type)
    pending: list[bytes] = []
    written = 0
    try:
        with spool.path.open("wb") as out:
            async for chunk in chunks:
                sniffer.feed(chunk)
                pending.append(chunk)
                spool.size += len(chunk)
                if spool.size - written >= WRITE_CHUNK:
                    await asyncio.to_thread(out.writelines, pending)
                    pending, written = [], spool.size
            await asyncio.to_thread(out.writelines, pending)
    except BaseException:
        spool.remove()
        raise
    spool.fields = sniffer.fields
    return spool


def sweep_spools(media_root: Path) -> None:
    """Remove what a crashed ingress left (one ingress per app: nothing else is in flight)."""
    folder = media_root / SPOOL_DIR
    if folder.is_dir() and not folder.is_symlink():
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
